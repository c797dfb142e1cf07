//! TLS with a CA made in the test: an agent (and the API client) trusting the CA connects; one
//! that does not is refused by its own certificate check.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio_tungstenite::Connector;

use crate::common::Agent;

struct TestPki {
    ca_pem: String,
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

/// Writes `cert.pem` and `key.pem` for localhost/127.0.0.1, signed by a fresh CA.
fn make_pki(dir: &Path) -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "opsagent test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    TestPki { ca_pem: ca.pem(), ca_der: ca.der().clone() }
}

fn client_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test]
async fn agents_connect_over_tls_only_when_they_trust_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let mut config = crate::common::config(&dir.path().join("data"));
    config.tls = Some(opsagent_hub::TlsFiles { cert: dir.path().join("cert.pem"), key: dir.path().join("key.pem") });
    let hub = opsagent_hub::serve(config).await.unwrap();
    assert!(hub.agent_url().starts_with("wss://"));
    assert!(hub.url().starts_with("https://"));

    // The API over https, trusting the CA.
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = client
        .post(format!("{}/api/v1/apps", hub.url()))
        .bearer_auth(crate::common::TOKEN)
        .json(&serde_json::json!({ "id": "demo" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let response = client
        .post(format!("{}/api/v1/apps/demo/instances", hub.url()))
        .bearer_auth(crate::common::TOKEN)
        .json(&serde_json::json!({ "id": "web-1" }))
        .send()
        .await
        .unwrap();
    let added: serde_json::Value = response.json().await.unwrap();
    assert!(added["config"].as_str().unwrap().contains("hub_url = \"wss://"));
    let secret = added["secret"].as_str().unwrap().to_string();

    // The dashboard's session cookie is `Secure` over TLS.
    let browser = crate::dashboard::no_redirects()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let (_, set_cookie) = crate::dashboard::sign_in(&browser, &hub.url()).await;
    for flag in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }

    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        hub.agent_url(),
        None,
        false,
        Some(Connector::Rustls(client_config(roots))),
    )
    .await
    .expect("an agent trusting the CA connects");
    let mut agent = Agent::after_connect(socket).await;
    agent.handshake("demo", "web-1", &secret, None).await;
    assert_eq!(agent.recv().await["code"], "Welcome");

    // Without the CA, the agent's certificate check fails.
    let refused = tokio_tungstenite::connect_async_tls_with_config(
        hub.agent_url(),
        None,
        false,
        Some(Connector::Rustls(client_config(rustls::RootCertStore::empty()))),
    )
    .await;
    let Err(error) = refused else {
        panic!("an agent not trusting the CA must be refused");
    };
    assert!(error.to_string().to_lowercase().contains("certificate"), "{error}");
    // Plain ws to a TLS hub does not get through either.
    let plain = hub.agent_url().replacen("wss://", "ws://", 1);
    assert!(tokio_tungstenite::connect_async(plain).await.is_err());
    hub.shutdown().await;
}

#[tokio::test]
async fn bad_tls_files_are_an_environment_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::config(dir.path());
    config.tls =
        Some(opsagent_hub::TlsFiles { cert: dir.path().join("missing.pem"), key: dir.path().join("missing-key.pem") });
    match opsagent_hub::serve(config).await {
        Err(opsagent_hub::ServeError::Environment(e)) => {
            assert!(format!("{e:#}").contains("missing.pem"), "{e:#}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("missing TLS files must be refused"),
    }
}

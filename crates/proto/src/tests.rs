//! Codec tests: the original's messages decode, ours round-trip, and nothing panics.

use proptest::prelude::*;

use super::*;

#[test]
fn original_messages_decode() {
    let m = decode_hub(r#"{"code":"RecipeMetadata","recipe_version":3,"module":{"repo":"x","tag":"y"},"state":[{"id":"a","module":"meta.comment","parameter":{}}]}"#).unwrap();
    assert!(matches!(m, HubMessage::RecipeMetadata { recipe_version: 3, state: Some(ref s), .. } if s.len() == 1));
    assert_eq!(
        decode_hub(r#"{"code":"State","recipe_version":3,"stateid":"w"}"#).unwrap(),
        HubMessage::State { recipe_version: 3, id: "w".into() }
    );
    assert_eq!(decode_hub(r#"{"code":"AppNotReady"}"#).unwrap(), HubMessage::AppNotReady { reason: None });
    let log = decode_agent(r#"{"code":"StateLog","instance_id":"i","app_id":"a","recipe_version":1,"id":"s","state_result":true,"state_comment":null,"state_stdout":null}"#).unwrap();
    assert!(matches!(log, AgentMessage::StateLog(ref l) if l.id == "s" && l.state_result));
}

#[test]
fn round_trip_and_unknown_fields() {
    let m = AgentMessage::RoundEnd { seq: 9, recipe_version: 2, round: 4, result: "failed".into(), duration_ms: 12 };
    assert_eq!(decode_agent(&encode(&m)).unwrap(), m);
    let with_extra = r#"{"code":"Ack","seq":5,"future_field":[1,2]}"#;
    assert_eq!(decode_hub(with_extra).unwrap(), HubMessage::Ack { seq: 5 });
}

#[test]
fn refusals() {
    assert_eq!(decode_agent("nope"), Err(ProtoError::NotJson("expected ident at line 1 column 2".into())));
    assert_eq!(decode_agent("{}"), Err(ProtoError::NoCode));
    assert_eq!(decode_agent(r#"{"code":"Ack","seq":1}"#), Err(ProtoError::UnknownCode("Ack".into())));
    assert!(matches!(decode_agent(r#"{"code":"Handshake"}"#), Err(ProtoError::Malformed { .. })));
    let big = format!(r#"{{"code":"StateLog","x":"{}"}}"#, "a".repeat(MAX_AGENT_FRAME));
    assert!(matches!(decode_agent(&big), Err(ProtoError::TooLarge { .. })));
}

#[test]
fn hmac_verifies_only_the_right_secret() {
    let proof = handshake_hmac("s3cret", "nonce", "app", "i-1");
    assert!(verify_handshake("s3cret", "nonce", "app", "i-1", &proof));
    assert!(!verify_handshake("other", "nonce", "app", "i-1", &proof));
    assert!(!verify_handshake("s3cret", "nonce2", "app", "i-1", &proof));
    assert!(!verify_handshake("s3cret", "nonce", "app", "i-2", &proof));
    assert!(!verify_handshake("s3cret", "nonce", "app", "i-1", "zz"));
}

proptest! {
    #[test]
    fn decoders_never_panic(text in "\\PC{0,300}") {
        let _ = decode_agent(&text);
        let _ = decode_hub(&text);
    }

    #[test]
    fn json_objects_never_panic(code in prop_oneof![Just("StateLog"), Just("Handshake"), Just("RecipeMetadata"), Just("State"), Just("RoundEnd"), Just("x")],
                                fields in prop::collection::vec(("[a-z_]{1,12}", prop_oneof![Just(serde_json::json!(null)), Just(serde_json::json!(1)), Just(serde_json::json!("s")), Just(serde_json::json!([])), Just(serde_json::json!({}))]), 0..8)) {
        let mut obj = serde_json::Map::new();
        obj.insert("code".into(), code.into());
        for (k, v) in fields { obj.insert(k, v); }
        let text = serde_json::Value::Object(obj).to_string();
        let _ = decode_agent(&text);
        let _ = decode_hub(&text);
    }
}

//! The `opsagent-hub` command line: `serve`, and the operator commands that talk to a hub's API
//! (`app`, `instance`, `recipe`, `done`, `status`, `logs`, `upgrade`); `keygen` and `release` work on
//! the local files (a key directory, the hub's data directory). Results go to stdout (the API's JSON
//! with `--json`); errors, hints and recipe diagnostics to stderr.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::auth::{self, Secret};
use crate::client::{Client, Exit, Failure};

#[derive(Debug, Parser)]
#[command(name = "opsagent-hub", version, about = "The opsagent hub and its operator CLI")]
pub struct Cli {
    /// The hub's URL, for the operator commands.
    #[arg(long, global = true, env = "OPSAGENT_HUB_URL", default_value = "http://127.0.0.1:7700")]
    pub hub: String,
    /// The operator API token (default: read from `<data-dir>/api-token`).
    #[arg(long, global = true, env = "OPSAGENT_HUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The hub's data directory (database, API token).
    #[arg(long, global = true, default_value = "./opsagent-hub-data")]
    pub data_dir: PathBuf,
    /// Trust this CA certificate (PEM) when talking to a TLS hub (besides the system's roots).
    #[arg(long, global = true, env = "OPSAGENT_HUB_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Print the API's JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub.
    Serve(ServeArgs),
    /// Try it: a local hub, a demo app and a local agent applying an example recipe, shown live.
    Quickstart(crate::quickstart::QuickstartArgs),
    /// Create and list apps.
    #[command(subcommand)]
    App(AppCommand),
    /// Add and list instances of an app.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Push and show an app's recipe.
    #[command(subcommand)]
    Recipe(RecipeCommand),
    /// Release a `meta.wait` state on an instance (`*`: every instance of the app).
    Done {
        app: String,
        instance: String,
        state_id: String,
        /// The recipe version (default: the current one).
        #[arg(long)]
        recipe_version: Option<u64>,
    },
    /// Show an app's instances and the latest result of every state.
    Status { app: String },
    /// Run a round now on an app's instances (all, or those named): an idle agent starts at once,
    /// a running round is preempted (the original's *Reload States*).
    Reload { app: String, instances: Vec<String> },
    /// Set attributes of a component (for links such as `@{web.ElbDns}`).
    #[command(subcommand)]
    Component(ComponentCommand),
    /// Make the ed25519 key pair that signs agent releases (`release.key`, mode 0600, and `release.pub`).
    Keygen {
        /// The directory to write the two files into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Add (sign and store) and list agent releases in the hub's `--data-dir`.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Set the agent version of an app's instances: connected agents upgrade at their round's end.
    Upgrade {
        app: String,
        /// A version added with `release add`.
        #[arg(long)]
        version: String,
        /// Allow installing a version older than the one an agent runs (without it, the hub
        /// refuses the order if an instance last reported a newer version).
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Print the POSIX sh script (cloud-init userdata) that installs and starts the agent on an instance.
    Userdata {
        #[arg(long)]
        app: String,
        /// Create this instance now and put its identity in the script (else the script takes
        /// `INSTANCE_ID SECRET` as arguments).
        #[arg(long)]
        instance: Option<String>,
        /// The agent version to install (default: the app's target version, else the newest release).
        #[arg(long)]
        version: Option<String>,
    },
    /// Show recent state logs, newest last.
    Logs {
        app: String,
        #[arg(long)]
        instance: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only logs with a seq above this one (needs `--instance`).
        #[arg(long)]
        after_seq: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM); needs `--tls-key`.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); needs `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain http/ws on a non-loopback address (behind a TLS-terminating proxy).
    #[arg(long)]
    pub insecure_plain_ws: bool,
    /// Read the operator token from this file (else `OPSAGENT_HUB_TOKEN`, else `<data-dir>/api-token`).
    #[arg(long)]
    pub api_token_file: Option<PathBuf>,
    /// The agents' URL to put in instance configs (default: from the API request's host).
    #[arg(long)]
    pub public_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an app.
    Create { app: String },
    /// List the apps.
    List,
    /// Make a new secret for the app's reload webhook (`POST /api/v1/apps/APP/reload`, signed
    /// GitHub-style with `X-Hub-Signature-256`); prints the URL and the secret, once.
    Webhook { app: String },
    /// Change an app's settings.
    Set {
        app: String,
        /// Refuse pushes with compatibility warnings (unknown parameters, aliases, repeated ids…).
        #[arg(long)]
        strict: Option<bool>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ComponentCommand {
    /// Set (`--attr KEY=VALUE`) or remove (`--unset KEY`) attributes of a component.
    Set {
        app: String,
        component: String,
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        #[arg(long = "unset", value_name = "KEY")]
        unset: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Add an instance; prints its agent config, with its secret (shown only this once).
    Add {
        app: String,
        instance: String,
        /// The component (group) it belongs to: it runs that component's states (default: a
        /// component named like the instance).
        #[arg(long)]
        component: Option<String>,
    },
    /// Move an instance to another component, or set (`--attr KEY=VALUE`) or remove (`--unset
    /// KEY`) its attributes (for links such as `@{db.DnsName}`).
    Set {
        app: String,
        instance: String,
        #[arg(long)]
        component: Option<String>,
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        #[arg(long = "unset", value_name = "KEY")]
        unset: Vec<String>,
    },
    /// List an app's instances.
    List { app: String },
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Store an agent binary as release VERSION in `<data-dir>/releases/`, with a signed manifest.
    Add {
        #[arg(long)]
        version: String,
        /// The agent binary.
        #[arg(long, value_name = "PATH")]
        binary: PathBuf,
        /// The private key made by `keygen` (`release.key`).
        #[arg(long, value_name = "KEY")]
        signing_key: PathBuf,
    },
    /// List the releases in `<data-dir>/releases/`.
    List,
}

#[derive(Debug, Subcommand)]
pub enum RecipeCommand {
    /// Validate a recipe file locally, then push it as the app's next version.
    Push { app: String, file: PathBuf },
    /// Print the app's current recipe as pushed, or (`--instance`) as rendered for one instance.
    Show {
        app: String,
        #[arg(long)]
        instance: Option<String>,
    },
}

/// `--attr K=V` and `--unset K` as the API's `{K: V, K: null}`.
fn attributes(attrs: &[String], unset: &[String]) -> Result<Value, Failure> {
    let mut map = serde_json::Map::new();
    for a in attrs {
        let Some((k, v)) = a.split_once('=') else {
            return Err(Failure::new(Exit::Invalid, format!("`--attr {a}` is not KEY=VALUE"))
                .hint("write e.g. `--attr PrivateIpAddress=10.0.0.4`"));
        };
        map.insert(k.trim().to_string(), Value::String(v.to_string()));
    }
    for k in unset {
        map.insert(k.clone(), Value::Null);
    }
    Ok(Value::Object(map))
}

/// Runs one operator command (anything but `serve`).
pub async fn run_operator(cli: &Cli) -> Exit {
    let result = operator(cli).await;
    match result {
        Ok(()) => Exit::Success,
        Err(failure) => {
            if cli.json {
                if let Some(body) = &failure.body {
                    println!("{}", pretty(body));
                }
            }
            eprintln!("error: {}", failure.message);
            if let Some(hint) = &failure.hint {
                eprintln!("\nhint: {hint}");
            }
            failure.exit
        }
    }
}

async fn operator(cli: &Cli) -> Result<(), Failure> {
    // Recipe files are checked before anything else: a bad file needs no hub.
    let wire = match &cli.command {
        Command::Recipe(RecipeCommand::Push { file, .. }) => Some(wire_form(file)?),
        Command::Keygen { .. } | Command::Release(_) => return local(cli),
        _ => None,
    };
    let client = Client::new(&cli.hub, token(cli)?, cli.ca_cert.as_deref())
        .map_err(|e| Failure::new(Exit::Environment, format!("{e:#}")))?;
    let out = |value: &Value, human: &dyn Fn(&Value) -> String| {
        if cli.json {
            println!("{}", pretty(value));
        } else {
            print!("{}", human(value));
        }
    };
    match &cli.command {
        Command::Serve(_) | Command::Quickstart(_) | Command::Keygen { .. } | Command::Release(_) => {
            unreachable!("`serve`, `quickstart`, `keygen` and `release` do not talk to a hub")
        }
        Command::Userdata { app, instance, version } => {
            let mut path = format!("/apps/{}/install", segment(app));
            if let Some(v) = version {
                path.push_str(&format!("?version={}", segment(v)));
            }
            let info = client.get(&path).await?;
            let identity = match instance {
                Some(instance) => {
                    let path = format!("/apps/{}/instances", segment(app));
                    let answer = client.post(&path, &json!({ "id": instance })).await?;
                    eprintln!(
                        "added instance `{instance}` to app `{app}`; its secret is in the script (keep it private)"
                    );
                    Some((instance.clone(), text(&answer["secret"])))
                }
                None => None,
            };
            let script = crate::userdata::render(&crate::userdata::Userdata {
                agent_url: text(&info["agent_url"]),
                app: app.clone(),
                instance: identity,
                version: text(&info["version"]),
                sha256: text(&info["sha256"]),
                binary_url: text(&info["binary_url"]),
                public_key: text(&info["public_key"]),
            });
            print!("{script}");
        }
        Command::Upgrade { app, version, allow_downgrade } => {
            let path = format!("/apps/{}/upgrade", segment(app));
            let answer = client.post(&path, &json!({ "version": version, "allow_downgrade": allow_downgrade })).await?;
            out(&answer, &|v| {
                format!(
                    "app `{app}` now runs agent {version}: sent to {} connected agent(s) on another version; the others upgrade when they connect\n",
                    v["sent_to"]
                )
            });
        }
        Command::App(AppCommand::Create { app }) => {
            let answer = client.post("/apps", &json!({ "id": app })).await?;
            out(&answer, &|_| format!("created app `{app}`\n"));
        }
        Command::App(AppCommand::List) => {
            let answer = client.get("/apps").await?;
            out(&answer, &|v| lines(&v["apps"], |a| text(&a["id"])));
        }
        Command::App(AppCommand::Webhook { app }) => {
            let answer = client.post(&format!("/apps/{}/webhook", segment(app)), &json!({})).await?;
            out(&answer, &|v| {
                format!(
                    "reload webhook of app `{app}` (the secret is shown only now; a new one replaces it):\n  URL           {}\n  content type  application/json\n  secret        {}\n",
                    text(&v["url"]),
                    text(&v["secret"])
                )
            });
        }
        Command::App(AppCommand::Set { app, strict }) => {
            let answer = client.post(&format!("/apps/{}/settings", segment(app)), &json!({ "strict": strict })).await?;
            out(&answer, &|v| {
                format!("app `{app}`: strict pushes {}\n", if v["strict"] == true { "on" } else { "off" })
            });
        }
        Command::Instance(InstanceCommand::Set { app, instance, component, attrs, unset }) => {
            let path = format!("/apps/{}/instances/{}", segment(app), segment(instance));
            let body = json!({ "component": component, "attributes": attributes(attrs, unset)? });
            let answer = client.post(&path, &body).await?;
            out(&answer, &|v| {
                let attrs = v["attributes"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!(" {k}={}", text(v))).collect::<String>())
                    .unwrap_or_default();
                format!(
                    "instance `{instance}` of app `{app}`: component `{}`{}{}; {} agent(s) sent a new recipe\n",
                    text(&v["component"]),
                    if attrs.is_empty() { String::new() } else { format!(", attributes{attrs}") },
                    if v["changed"] == true { "" } else { " (unchanged)" },
                    v["sent_to"]
                )
            });
        }
        Command::Component(ComponentCommand::Set { app, component, attrs, unset }) => {
            let path = format!("/apps/{}/components/{}", segment(app), segment(component));
            let answer = client.post(&path, &json!({ "attributes": attributes(attrs, unset)? })).await?;
            out(&answer, &|v| {
                format!(
                    "component `{component}` of app `{app}`: {}; {} agent(s) sent a new recipe\n",
                    if v["changed"] == true { "attributes set" } else { "unchanged" },
                    v["sent_to"]
                )
            });
        }
        Command::Reload { app, instances } => {
            let path = format!("/apps/{}/reload", segment(app));
            let answer = client.post(&path, &json!({ "instances": instances })).await?;
            out(&answer, &|v| {
                let mut s = String::new();
                for id in v["reloaded"].as_array().into_iter().flatten() {
                    let _ = writeln!(s, "{}: round starting now", text(id));
                }
                for id in v["not_connected"].as_array().into_iter().flatten() {
                    let _ = writeln!(s, "{}: not connected (its agent runs a round when it connects)", text(id));
                }
                s
            });
        }
        Command::Instance(InstanceCommand::Add { app, instance, component }) => {
            let path = format!("/apps/{}/instances", segment(app));
            let answer = client.post(&path, &json!({ "id": instance, "component": component })).await?;
            if !cli.json {
                eprintln!("added instance `{instance}` to app `{app}`; its agent config follows (keep it: the secret is shown only now)");
            }
            out(&answer, &|v| text(&v["config"]));
        }
        Command::Instance(InstanceCommand::List { app }) => {
            let answer = client.get(&format!("/apps/{}/instances", segment(app))).await?;
            out(&answer, &|v| {
                lines(&v["instances"], |i| {
                    let connected = if i["connected"] == true { "connected" } else { "-" };
                    format!("{}\t{}\t{connected}", text(&i["instance_id"]), text(&i["component"]))
                })
            });
        }
        Command::Recipe(RecipeCommand::Push { app, file }) => {
            let wire = wire.unwrap_or(Value::Null);
            let path = format!("/apps/{}/recipes", segment(app));
            let answer = client.post(&path, &wire).await.map_err(|mut failure| {
                if let Some(diagnostics) = failure.body.as_ref().and_then(|b| b["diagnostics"].as_array()) {
                    for d in diagnostics {
                        eprintln!("{}", render_diagnostic(d));
                    }
                }
                failure.message = format!("{}: {}", file.display(), failure.message);
                failure
            })?;
            if !cli.json {
                for w in answer["warnings"].as_array().into_iter().flatten() {
                    eprintln!("{}: {}", file.display(), render_diagnostic(w));
                }
            }
            out(&answer, &|v| {
                let version = &v["recipe_version"];
                if v["unchanged"] == true {
                    format!("recipe unchanged: app `{app}` stays at version {version}; nothing sent\n")
                } else {
                    format!(
                        "pushed recipe version {version} to app `{app}` (sent to {} connected agent(s))\n",
                        v["sent_to"]
                    )
                }
            });
        }
        Command::Recipe(RecipeCommand::Show { app, instance }) => {
            let mut path = format!("/apps/{}/recipe", segment(app));
            if let Some(instance) = instance {
                path.push_str(&format!("?instance={}", segment(instance)));
            }
            let answer = client.get(&path).await?;
            out(&answer, &|v| format!("{}\n", pretty(v)));
        }
        Command::Done { app, instance, state_id, recipe_version } => {
            let path = format!("/apps/{}/instances/{}/done", segment(app), segment(instance));
            let body = json!({ "state_id": state_id, "recipe_version": recipe_version });
            let answer = client.post(&path, &body).await?;
            out(&answer, &|v| {
                let mut s = String::new();
                let version = &v["recipe_version"];
                for id in v["released"].as_array().into_iter().flatten() {
                    let _ = writeln!(s, "released `{state_id}` (recipe version {version}) on {}", text(id));
                }
                for id in v["already_released"].as_array().into_iter().flatten() {
                    let _ = writeln!(s, "`{state_id}` (recipe version {version}) was already released on {}", text(id));
                }
                s
            });
        }
        Command::Status { app } => {
            let answer = client.get(&format!("/apps/{}/status", segment(app))).await?;
            out(&answer, &status_table);
        }
        Command::Logs { app, instance, limit, after_seq } => {
            let mut path = format!("/apps/{}/logs?limit={limit}", segment(app));
            if let Some(instance) = instance {
                path.push_str(&format!("&instance={}", segment(instance)));
            }
            if let Some(after) = after_seq {
                path.push_str(&format!("&after_seq={after}"));
            }
            let answer = client.get(&path).await?;
            out(&answer, &|v| lines(&v["logs"], log_line));
        }
    }
    Ok(())
}

/// The commands on local files: `keygen`, `release add`, `release list`.
fn local(cli: &Cli) -> Result<(), Failure> {
    let env = |e: anyhow::Error| Failure::new(Exit::Environment, format!("{e:#}"));
    match &cli.command {
        Command::Keygen { out } => {
            let public = crate::releases::keygen(out).map_err(env)?;
            eprintln!(
                "wrote {} (keep it secret, off the hub if you can) and {}",
                out.join(crate::releases::PRIVATE_KEY_FILE).display(),
                out.join(crate::releases::PUBLIC_KEY_FILE).display()
            );
            println!("{public}");
        }
        Command::Release(ReleaseCommand::Add { version, binary, signing_key }) => {
            crate::releases::check_version(version).map_err(|e| Failure::new(Exit::Invalid, format!("{e:#}")))?;
            let key = crate::releases::read_signing_key(signing_key)
                .map_err(|e| Failure::new(Exit::Invalid, format!("{e:#}")))?;
            let manifest = crate::releases::add(&cli.data_dir, version, binary, &key).map_err(env)?;
            if cli.json {
                println!("{}", pretty(&serde_json::to_value(&manifest).unwrap_or_default()));
            } else {
                println!("added release {} (sha256 {}, {} bytes)", manifest.version, manifest.sha256, manifest.size);
            }
        }
        Command::Release(ReleaseCommand::List) => {
            let list = crate::releases::list(&cli.data_dir).map_err(env)?;
            if cli.json {
                println!("{}", pretty(&serde_json::to_value(&list).unwrap_or_default()));
            } else {
                for m in list {
                    println!("{}\t{}\t{} bytes", m.version, m.sha256, m.size);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The operator token: `--token`/`OPSAGENT_HUB_TOKEN`, else `<data-dir>/api-token`.
fn token(cli: &Cli) -> Result<Secret, Failure> {
    if let Some(token) = cli.token.as_deref().filter(|t| !t.trim().is_empty()) {
        return Ok(Secret::new(token.trim().to_string()));
    }
    let path = cli.data_dir.join("api-token");
    auth::read_token_file(&path).map_err(|e| {
        Failure::new(Exit::Invalid, format!("no API token: {e:#}"))
            .hint("pass `--token`, set `OPSAGENT_HUB_TOKEN`, or point `--data-dir` at the hub's data directory")
    })
}

/// Reads and validates a recipe file like `opsagent validate`, then gives its wire form
/// `{"state": [...], "retries"?}`.
pub fn wire_form(file: &Path) -> Result<Value, Failure> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::new(Exit::Invalid, format!("cannot read the recipe {name}: {e}")))?;
    let (wire, warnings) = crate::recipe::wire_form(&text).map_err(|diagnostics| {
        let mut errors = 0;
        for mut d in diagnostics {
            d.file = Some(name.clone());
            errors += usize::from(d.is_error());
            eprintln!("{d}");
        }
        Failure::new(Exit::Invalid, format!("{name}: {errors} error(s); nothing pushed"))
    })?;
    // The hub checks again (links need the app) and answers with every warning: printed then.
    drop(warnings);
    Ok(wire)
}

/// The status of an app as a table, then every instance's states.
fn status_table(v: &Value) -> String {
    let mut s = String::new();
    let version = match &v["recipe_version"] {
        Value::Null => "none".to_string(),
        n => n.to_string(),
    };
    let target = match &v["target_version"] {
        Value::Null => String::new(),
        t => format!(", agent version {}", text(t)),
    };
    let _ = writeln!(s, "app {}: recipe version {version}{target}\n", text(&v["app_id"]));
    let instances = v["instances"].as_array().cloned().unwrap_or_default();
    let width = instances.iter().map(|i| text(&i["instance_id"]).len()).max().unwrap_or(0).max(8);
    let cwidth = instances.iter().map(|i| text(&i["component"]).len()).max().unwrap_or(0).max(9);
    let _ = writeln!(
        s,
        "{:<width$}  {:<cwidth$}  {:<9}  {:<6}  {:<5}  {:<11}  {:<10}  LAST SEEN",
        "INSTANCE", "COMPONENT", "CONNECTED", "RECIPE", "ROUND", "RESULT", "AGENT"
    );
    for i in &instances {
        let _ = writeln!(
            s,
            "{:<width$}  {:<cwidth$}  {:<9}  {:<6}  {:<5}  {:<11}  {:<10}  {}",
            text(&i["instance_id"]),
            text(&i["component"]),
            if i["connected"] == true { "yes" } else { "no" },
            or_dash(&i["recipe_version"]),
            or_dash(&i["round"]),
            or_dash(&i["round_result"]),
            or_dash(&i["agent_version"]),
            or_dash(&i["last_seen"]),
        );
    }
    for i in &instances {
        let u = &i["upgrade"];
        if u.is_object() {
            let reason = u["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "{}: upgrade {} → {}: {}{reason} ({})",
                text(&i["instance_id"]),
                or_dash(&u["from"]),
                text(&u["version"]),
                text(&u["phase"]),
                text(&u["at"])
            );
        }
    }
    for i in &instances {
        for w in i["waiting"].as_array().into_iter().flatten() {
            let _ = writeln!(s, "{}: {} {}", text(&i["instance_id"]), text(&w["state_id"]), text(&w["message"]));
        }
    }
    for i in &instances {
        let states = i["states"].as_array().cloned().unwrap_or_default();
        if states.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{}:", text(&i["instance_id"]));
        for st in &states {
            let comment =
                st["comment"].as_str().map(|c| format!("  {}", c.lines().next().unwrap_or(""))).unwrap_or_default();
            let _ = writeln!(
                s,
                "  {:>11}  {:<14} {}  (v{}, round {}, attempt {}){comment}",
                text(&st["status"]),
                text(&st["module"]),
                text(&st["id"]),
                st["recipe_version"],
                st["round"],
                st["attempt"],
            );
        }
    }
    s
}

fn log_line(log: &Value) -> String {
    let comment =
        log["state_comment"].as_str().map(|c| format!("  {}", c.lines().next().unwrap_or(""))).unwrap_or_default();
    format!(
        "{}  {}  seq {}  v{} round {}  {:>11}  {} {} (attempt {}, {} ms){comment}",
        text(&log["received_at"]),
        text(&log["instance_id"]),
        log["seq"],
        log["recipe_version"],
        log["round"],
        text(&log["status"]),
        text(&log["module"]),
        text(&log["id"]),
        log["attempt"],
        log["duration_ms"],
    )
}

fn lines(list: &Value, line: impl Fn(&Value) -> String) -> String {
    list.as_array().into_iter().flatten().map(|item| line(item) + "\n").collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn or_dash(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        other => text(other),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A diagnostic from the API, rendered like `opsagent validate` renders one.
fn render_diagnostic(d: &Value) -> String {
    let mut location = Vec::new();
    if let Some(id) = d["state_id"].as_str() {
        let module = d["module"].as_str().map(|m| format!(" ({m})")).unwrap_or_default();
        location.push(format!("state `{id}`{module}"));
    }
    if let Some(param) = d["param"].as_str() {
        location.push(format!("parameter `{param}`"));
    }
    location.push(text(&d["message"]));
    let mut s = format!("{}: {}", text(&d["severity"]), location.join(": "));
    if let Some(hint) = d["hint"].as_str() {
        s.push_str(&format!("\n  hint: {hint}"));
    }
    s
}

/// Ids are `[A-Za-z0-9._-]` (and `*`): safe in a URL path as they are; anything else is
/// percent-encoded so that a typo gets a clean 404 or 400.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-*".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

//! The process runner: every external command opsagent starts goes through [`run`].
//!
//! The child gets its own process group. On timeout or cancellation the whole group (the
//! command's children and grandchildren too) gets SIGTERM, then SIGKILL after a grace period,
//! and is reaped. stdout and stderr are captured separately, each as a bounded tail.
//! When the command exits while a background process it started still holds its output open,
//! the runner waits briefly, then stops reading and leaves that process alone (it is the user's
//! daemon); such processes should redirect their output.

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Added to (or replacing in) the inherited environment.
    pub env: Vec<(String, String)>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Written to the command's standard input (small inputs such as a password; at most 64 KiB),
    /// which is otherwise `/dev/null`.
    pub stdin: Option<Vec<u8>>,
}

/// Limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    pub max_output_bytes: usize,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    Exited(i32),
    Signalled(i32),
    TimedOut(Duration),
    Cancelled,
}

impl Termination {
    pub fn success(self) -> bool {
        self == Termination::Exited(0)
    }
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Termination::Exited(code) => write!(f, "exited with status {code}"),
            Termination::Signalled(sig) => {
                let name = Signal::try_from(*sig).map(|s| s.as_str()).unwrap_or("an unknown signal");
                write!(f, "was killed by {name}")
            }
            Termination::TimedOut(t) => write!(f, "timed out after {}s; its process group was killed", t.as_secs()),
            Termination::Cancelled => write!(f, "was interrupted; its process group was killed"),
        }
    }
}

/// The last `max` bytes of a stream, and how many came before them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tail {
    pub bytes: Vec<u8>,
    pub dropped: u64,
}

impl Tail {
    fn push(&mut self, chunk: &[u8], max: usize) {
        self.bytes.extend_from_slice(chunk);
        *self = std::mem::take(self).capped(max);
    }

    /// A tail of `bytes`: their last `max` bytes, the rest counted as dropped.
    pub fn from_bytes(bytes: Vec<u8>, max: usize) -> Tail {
        Tail { bytes, dropped: 0 }.capped(max)
    }

    /// This tail cut to its last `max` bytes; what is cut counts as dropped, with what already was.
    pub fn capped(mut self, max: usize) -> Tail {
        if self.bytes.len() > max {
            let cut = self.bytes.len() - max;
            self.bytes.drain(..cut);
            self.dropped += cut as u64;
        }
        self
    }

    /// The tail as text (lossy), with a note when the start was dropped.
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        if self.dropped > 0 {
            format!("[{} earlier bytes dropped]\n{text}", self.dropped)
        } else {
            text.into_owned()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.dropped == 0
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Output {
    pub termination: Termination,
    pub stdout: Tail,
    pub stderr: Tail,
}

/// How long output pipes may stay open after the command exits.
const PIPE_GRACE: Duration = Duration::from_millis(500);

/// Runs `spec` to completion, timeout or cancellation. An error means it could not start.
pub async fn run(spec: &Spec, limits: Limits, cancel: &CancellationToken) -> std::io::Result<Output> {
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    for (k, v) in &spec.env {
        command.env(k, v);
    }
    // std sets the gid before the uid and, when it sets a uid, drops supplementary groups.
    if let Some(gid) = spec.gid {
        command.gid(gid);
    }
    if let Some(uid) = spec.uid {
        command.uid(uid);
    }
    let mut child = command.spawn()?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    if let (Some(bytes), Some(mut pipe)) = (&spec.stdin, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        // Fits in the pipe's buffer, so this never waits on the command; a command that exits
        // without reading it is not an error.
        let _ = pipe.write_all(bytes).await;
    }
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let (mut out_tail, mut err_tail) = (Tail::default(), Tail::default());
    let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
    let max = limits.max_output_bytes;

    let deadline = tokio::time::sleep(limits.timeout);
    tokio::pin!(deadline);
    let pipe_grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(pipe_grace);
    let mut exit: Option<std::process::ExitStatus> = None;

    let stopped = loop {
        if exit.is_some() && stdout.is_none() && stderr.is_none() {
            break None;
        }
        tokio::select! {
            n = read_some(&mut stdout, &mut out_buf) => match n {
                Some(n) => out_tail.push(&out_buf[..n], max),
                None => stdout = None,
            },
            n = read_some(&mut stderr, &mut err_buf) => match n {
                Some(n) => err_tail.push(&err_buf[..n], max),
                None => stderr = None,
            },
            status = child.wait(), if exit.is_none() => {
                exit = Some(status?);
                pipe_grace.as_mut().reset(tokio::time::Instant::now() + PIPE_GRACE);
            }
            () = &mut pipe_grace, if exit.is_some() => break None,
            () = &mut deadline => break Some(Termination::TimedOut(limits.timeout)),
            () = cancel.cancelled() => break Some(Termination::Cancelled),
        }
    };

    let termination = match stopped {
        None => termination_of(exit.expect("the loop ends without a stop only after the exit")),
        Some(stop) => {
            if let Some(pgid) = pgid {
                kill_group(&mut child, pgid, exit.is_some(), limits.kill_grace).await;
            }
            stop
        }
    };
    Ok(Output { termination, stdout: out_tail, stderr: err_tail })
}

/// SIGTERM the group, give it `grace` to end, SIGKILL whatever is left, reap the child.
async fn kill_group(child: &mut tokio::process::Child, pgid: Pid, child_reaped: bool, grace: Duration) {
    let _ = killpg(pgid, Signal::SIGTERM);
    if !child_reaped {
        let _ = tokio::time::timeout(grace, child.wait()).await;
    }
    // Grandchildren may outlive the child or ignore SIGTERM: the whole group goes.
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait().await;
}

async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> Option<usize> {
    match pipe {
        Some(p) => match p.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

fn termination_of(status: std::process::ExitStatus) -> Termination {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Termination::Exited(code),
        (None, Some(sig)) => Termination::Signalled(sig),
        (None, None) => Termination::Exited(-1),
    }
}

/// Runs a tool for a module: `program` with `args`, the state's timeout and cancellation, no
/// shell. A missing program is [`StateError::MissingTool`] naming it (with `install_hint`); a
/// non-zero exit is [`StateError::Command`] with its output. Returns the output on success.
pub async fn run_tool(
    ctx: &crate::Ctx,
    program: &str,
    args: &[&str],
    install_hint: &str,
) -> Result<Output, crate::StateError> {
    let spec =
        Spec { program: program.to_string(), args: args.iter().map(|a| a.to_string()).collect(), ..Spec::default() };
    run_spec(ctx, &spec, install_hint).await
}

/// Like [`run_tool`] with a full [`Spec`] (environment, working directory, user).
pub async fn run_spec(ctx: &crate::Ctx, spec: &Spec, install_hint: &str) -> Result<Output, crate::StateError> {
    let output = run_spec_any_exit(ctx, spec, install_hint).await?;
    match output.termination {
        Termination::Exited(0) => Ok(output),
        Termination::Cancelled => Err(crate::StateError::Cancelled),
        termination => Err(crate::StateError::Command { termination, stdout: output.stdout, stderr: output.stderr }),
    }
}

/// Output kept from a query whose output is parsed whole (a package list, a JSON report), so it
/// is not cut at the report limit.
pub const QUERY_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// Runs a query tool with room for its whole output; an exit code `accept` takes is success. A
/// missing program is [`StateError::MissingTool`](crate::StateError::MissingTool) with
/// `install_hint`, an interruption `Cancelled`, anything else a `Command` error whose output is
/// capped at the report limit.
pub async fn run_query(
    ctx: &crate::Ctx,
    spec: &Spec,
    install_hint: &str,
    accept: impl Fn(i32) -> bool,
) -> Result<Output, crate::StateError> {
    let max = ctx.round.max_output_bytes;
    let limits = Limits {
        timeout: ctx.timeout,
        kill_grace: ctx.round.kill_grace,
        max_output_bytes: QUERY_OUTPUT_BYTES.max(max),
    };
    let output = start(ctx, spec, limits, install_hint).await?;
    match output.termination {
        Termination::Exited(code) if accept(code) => Ok(output),
        Termination::Cancelled => Err(crate::StateError::Cancelled),
        termination => Err(crate::StateError::Command {
            termination,
            stdout: output.stdout.capped(max),
            stderr: output.stderr.capped(max),
        }),
    }
}

/// Like [`run_spec`], but any exit status is returned as output (for tools whose non-zero statuses
/// carry meaning, such as `puppet --detailed-exitcodes`); a missing program is still
/// [`StateError::MissingTool`](crate::StateError::MissingTool), an interruption `Cancelled`, and a
/// timeout or a signal a `Command` error.
pub async fn run_spec_any_exit(ctx: &crate::Ctx, spec: &Spec, install_hint: &str) -> Result<Output, crate::StateError> {
    let limits =
        Limits { timeout: ctx.timeout, kill_grace: ctx.round.kill_grace, max_output_bytes: ctx.round.max_output_bytes };
    let output = start(ctx, spec, limits, install_hint).await?;
    match output.termination {
        Termination::Exited(_) => Ok(output),
        Termination::Cancelled => Err(crate::StateError::Cancelled),
        termination => Err(crate::StateError::Command { termination, stdout: output.stdout, stderr: output.stderr }),
    }
}

/// Runs `spec` under `limits`: a missing program is
/// [`StateError::MissingTool`](crate::StateError::MissingTool) with `install_hint`.
async fn start(ctx: &crate::Ctx, spec: &Spec, limits: Limits, install_hint: &str) -> Result<Output, crate::StateError> {
    match run(spec, limits, &ctx.cancel).await {
        Ok(output) => Ok(output),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(crate::StateError::MissingTool { tool: spec.program.clone(), hint: install_hint.to_string() })
        }
        Err(source) => Err(crate::StateError::Spawn { program: spec.program.clone(), source }),
    }
}

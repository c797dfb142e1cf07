#!/usr/bin/env python3
"""Converged-run benchmark: opsagent vs CFEngine 3 (cf-agent) vs Salt 3007.1 masterless.

Generates the same workload in each tool's native form (N files, N/5 directories,
N/5 guarded commands), converges it with every tool, checks that every tool leaves
exactly the expected state and that its second run changes nothing, then times
K alternating converged runs (A B C A B C ...) of each tool after one warm-up each.

Python 3 stdlib only; run as root (it installs the peers with apt-get / pip).
See bench/README.md.
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PINS_FILE = BENCH_DIR / "salt-3007.1-pins.txt"
SALT_VERSION = "3007.1"
TIME_BIN = "/usr/bin/time"
SYS_PYTHON = "/usr/bin/python3"  # Debian's python3, for the salt venv
MODES = ("0644", "0600", "0640")
DIR_MODE = "0755"

TOOLS = ("opsagent", "cf-agent", "salt")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"ERROR: {msg}")
    sys.exit(2)


# ---------------------------------------------------------------- installs


def apt_env():
    env = dict(os.environ)
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return env


def dpkg_installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                       capture_output=True, text=True)
    return r.returncode == 0 and "install ok installed" in r.stdout


def apt_install(pkgs):
    pkgs = [p for p in pkgs if not dpkg_installed(p)]
    if not pkgs:
        return
    log(f"apt-get install {' '.join(pkgs)}")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
    if subprocess.run(cmd, env=apt_env()).returncode != 0:
        log("apt-get install failed; running apt-get update and retrying")
        subprocess.run(["apt-get", "update"], env=apt_env(), check=False)
        if subprocess.run(cmd, env=apt_env()).returncode != 0:
            die(f"could not install {pkgs}")


def find_cf_agent():
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/var/lib/cfengine3/bin"
    return shutil.which("cf-agent", path=path)


def ensure_cf_agent():
    cf = find_cf_agent()
    if cf is None:
        apt_install(["cfengine3"])
        cf = find_cf_agent()
        if cf is None:
            die("cfengine3 installed but cf-agent not found")
    return cf


def running_daemons(names):
    """Names of running processes among names (read from /proc, no ps needed)."""
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                found.add(Path(f"/proc/{pid}/comm").read_text().strip())
            except OSError:
                pass
    return sorted(found & set(names))


def salt_venv_ok(venv):
    salt_call = venv / "bin" / "salt-call"
    if not salt_call.exists():
        return False
    r = subprocess.run([str(salt_call), "--version"], capture_output=True, text=True)
    return r.returncode == 0 and SALT_VERSION in r.stdout


def ensure_salt(cache_dir):
    """Create (or reuse) the salt venv; return (salt-call path, setup seconds or None)."""
    venv = cache_dir / "salt-venv"
    if salt_venv_ok(venv):
        log(f"reusing salt venv {venv}")
        return venv / "bin" / "salt-call", None
    t0 = time.monotonic()
    apt_install(["gcc", "python3-dev", "python3-venv"])
    if not os.access(SYS_PYTHON, os.X_OK):
        apt_install(["python3"])
    if venv.exists():
        log(f"removing broken salt venv {venv}")
        shutil.rmtree(venv)
    cache_dir.mkdir(parents=True, exist_ok=True)
    log(f"creating salt venv {venv} (Debian {SYS_PYTHON} -m venv)")
    subprocess.run([SYS_PYTHON, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "--no-input"]
    log(f"pip install salt=={SALT_VERSION}")
    subprocess.run([*pip, f"salt=={SALT_VERSION}"], check=True)
    log(f"pip install -r {PINS_FILE.name}")
    subprocess.run([*pip, "-r", str(PINS_FILE)], check=True)
    if not salt_venv_ok(venv):
        die(f"salt venv {venv} does not run salt-call --version")
    took = time.monotonic() - t0
    log(f"salt venv ready in {took:.0f} s")
    return venv / "bin" / "salt-call", took


# ---------------------------------------------------------------- workload


class Workload:
    def __init__(self, n, scratch):
        self.n = n
        self.scratch = scratch
        self.tree = scratch / "tree"
        self.guard = self.tree / "guard"
        fw = max(4, len(str(n)))
        dw = max(3, len(str(max(n // 5, 1))))
        self.files = []  # (id, path, content, mode)
        for i in range(1, n + 1):
            mode = MODES[(i - 1) % 3]
            self.files.append((f"file-{i:0{fw}d}",
                               self.tree / "files" / f"f{i:0{fw}d}.conf",
                               file_content(i, mode), mode))
        self.dirs = [(f"dir-{i:0{dw}d}", self.tree / "dirs" / f"d{i:0{dw}d}")
                     for i in range(1, n // 5 + 1)]
        self.cmds = [(f"cmd-{i:0{dw}d}", self.tree / f"cmd-ran-{i:0{dw}d}")
                     for i in range(1, n // 5 + 1)]
        self.recipe = scratch / "opsagent" / "recipe.yaml"
        self.policy = scratch / "cfengine" / "policy.cf"
        self.salt_conf = scratch / "salt" / "conf"
        self.salt_states = scratch / "salt" / "states"
        self.sls = "bench"

    # -- tree

    def reset_tree(self):
        """Managed objects removed; parents and the guard left in place."""
        for sub in ("files", "dirs"):
            p = self.tree / sub
            if p.exists():
                shutil.rmtree(p)
            p.mkdir(parents=True)
            os.chmod(p, 0o755)
        for _, ran in self.cmds:
            if ran.exists():
                ran.unlink()
        self.guard.write_text("guard: the bench commands must never run\n")

    def check_tree(self):
        """Return a list of differences from the expected converged state."""
        bad = []
        for _, path, content, mode in self.files:
            try:
                st = path.stat()
                data = path.read_bytes()
            except FileNotFoundError:
                bad.append(f"missing {path}")
                continue
            if data != content.encode():
                bad.append(f"content differs: {path} ({len(data)} bytes, want {len(content)})")
            if oct(st.st_mode & 0o7777)[2:].rjust(4, "0") != mode:
                bad.append(f"mode {oct(st.st_mode & 0o7777)} != {mode}: {path}")
        for _, path in self.dirs:
            if not path.is_dir():
                bad.append(f"missing dir {path}")
            elif oct(path.stat().st_mode & 0o7777)[2:].rjust(4, "0") != DIR_MODE:
                bad.append(f"mode {oct(path.stat().st_mode & 0o7777)} != {DIR_MODE}: {path}")
        for _, ran in self.cmds:
            if ran.exists():
                bad.append(f"guarded command ran: {ran}")
        extra = sorted(set(os.listdir(self.tree / "files"))
                       - {p.name for _, p, _, _ in self.files})
        if extra:
            bad.append(f"unexpected files in tree/files: {extra[:5]}")
        return bad

    def snapshot(self):
        """Everything under tree/ with mode, size, mtime, inode: any write shows."""
        snap = {}
        for root, dirs, files in os.walk(self.tree):
            for name in dirs + files:
                p = os.path.join(root, name)
                st = os.lstat(p)
                snap[p] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)
        return snap

    # -- native forms

    def generate(self):
        if self.scratch.exists():
            shutil.rmtree(self.scratch)
        for d in (self.recipe.parent, self.policy.parent, self.salt_conf, self.salt_states):
            d.mkdir(parents=True)
        self.tree.mkdir(parents=True)
        self.reset_tree()
        self.recipe.write_text(self.opsagent_recipe())
        self.policy.write_text(self.cfengine_policy())
        os.chmod(self.policy, 0o600)
        (self.salt_states / f"{self.sls}.sls").write_text(self.salt_sls())
        (self.salt_conf / "minion").write_text(self.salt_minion_config())

    def opsagent_recipe(self):
        q = json.dumps
        out = ["version: 1", "states:"]
        for sid, path, content, mode in self.files:
            out += [f"  - id: {sid}", "    module: linux.file", "    parameter:",
                    f"      path: {q(str(path))}",
                    f"      content: {q(content)}",
                    f"      mode: {q(mode)}"]
        for sid, path in self.dirs:
            out += [f"  - id: {sid}", "    module: linux.dir", "    parameter:",
                    f"      path: [{q(str(path))}]",
                    f"      mode: {q(DIR_MODE)}"]
        for sid, ran in self.cmds:
            out += [f"  - id: {sid}", "    module: linux.cmd", "    parameter:",
                    f"      cmd: {q('touch ' + str(ran))}",
                    f"      if-path-absent: [{q(str(self.guard))}]"]
        return "\n".join(out) + "\n"

    def cfengine_policy(self):
        def s(text):  # CFEngine quoted string; content holds no $ @ \ " by construction
            assert not any(c in text for c in '$@\\"'), text
            return f'"{text}"'
        out = ['body common control', '{', '  bundlesequence => { "main" };', '}', '',
               'body perms m(mode)', '{', '  mode => "$(mode)";', '  rxdirs => "false";', '}', '',
               'bundle agent main', '{', '  files:']
        for _, path, content, mode in self.files:
            out += [f'    {s(str(path))}', '      create => "true",',
                    f'      content => {s(content)},', f'      perms => m("{mode}");']
        for _, path in self.dirs:
            out += [f'    {s(str(path) + "/.")}', '      create => "true",',
                    f'      perms => m("{DIR_MODE}");']
        out.append('  commands:')
        for _, ran in self.cmds:
            out += [f'    {s("/usr/bin/touch " + str(ran))}',
                    f'      if => not(fileexists({s(str(self.guard))}));']
        out.append('}')
        return "\n".join(out) + "\n"

    def salt_sls(self):
        q = json.dumps
        # '#!yaml': plain YAML renderer, no Jinja pass over the file contents.
        out = ["#!yaml"]
        for sid, path, content, mode in self.files:
            out += [f"{sid}:", "  file.managed:", f"    - name: {q(str(path))}",
                    f"    - contents: {q(content)}", f"    - mode: {q(mode)}"]
        for sid, path in self.dirs:
            out += [f"{sid}:", "  file.directory:", f"    - name: {q(str(path))}",
                    f"    - mode: {q(DIR_MODE)}"]
        for sid, ran in self.cmds:
            out += [f"{sid}:", "  cmd.run:", f"    - name: {q('touch ' + str(ran))}",
                    f"    - creates: {q(str(self.guard))}"]
        return "\n".join(out) + "\n"

    def salt_minion_config(self):
        base = self.scratch / "salt"
        q = lambda p: json.dumps(str(p))
        return "\n".join([
            "id: opsagent-bench",
            "file_client: local",
            "file_roots:",
            "  base:",
            f"    - {q(self.salt_states)}",
            f"cachedir: {q(base / 'cache')}",
            f"pki_dir: {q(base / 'pki')}",
            f"sock_dir: {q(base / 'sock')}",
            f"extension_modules: {q(base / 'cache' / 'extmods')}",
            f"pidfile: {q(base / 'run' / 'salt-minion.pid')}",
            f"log_file: {q(base / 'log' / 'minion')}",
            # no reverse-DNS lookups of the host's addresses (no network traffic)
            "enable_fqdns_grains: false",
            "",
        ])

    # -- commands

    def command(self, tool, paths, inform=False):
        if tool == "opsagent":
            return [str(paths["opsagent"]), "apply", str(self.recipe)]
        if tool == "cf-agent":
            cmd = [str(paths["cf-agent"]), "-K"]
            if inform:
                cmd.append("-I")
            return cmd + ["-f", str(self.policy)]
        if tool == "salt":
            return [str(paths["salt"]), "--local", "-c", str(self.salt_conf),
                    "--out=json", "--retcode-passthrough", "state.apply", self.sls]
        raise ValueError(tool)


def file_content(i, mode):
    """Deterministic, distinct, exactly 250 bytes, newline-terminated, no special chars."""
    text = f"# opsagent bench file {i} mode {mode}\n"
    j = 0
    while len(text) < 260:
        text += f"key_{i}_{j} = {hashlib.sha256(f'{i}:{j}'.encode()).hexdigest()}\n"
        j += 1
    return text[:249] + "\n"


# ---------------------------------------------------------------- running


class Run:
    def __init__(self, rc, wall, rss_kib, cpu, out, err):
        self.rc, self.wall, self.rss_kib, self.cpu = rc, wall, rss_kib, cpu
        self.out, self.err = out, err


def run_timed(cmd, workdir, tag):
    """Run cmd under /usr/bin/time; wall time measured here with time.monotonic()."""
    tfile = workdir / f"{tag}.time"
    ofile = workdir / f"{tag}.out"
    efile = workdir / f"{tag}.err"
    full = [TIME_BIN, "-f", "%e %M %U %S", "-o", str(tfile), *cmd]
    with open(ofile, "wb") as o, open(efile, "wb") as e:
        t0 = time.monotonic()
        rc = subprocess.run(full, stdout=o, stderr=e, stdin=subprocess.DEVNULL).returncode
        wall = time.monotonic() - t0
    rss, cpu = None, None
    try:
        # the last line: time prints "Command exited with non-zero status" first on failure
        fields = tfile.read_text().strip().splitlines()[-1].split()
        rss = int(fields[1])
        cpu = float(fields[2]) + float(fields[3])
    except (OSError, IndexError, ValueError):
        pass
    return Run(rc, wall, rss, cpu, ofile.read_text(errors="replace"),
               efile.read_text(errors="replace"))


def salt_changes(out):
    """(number of states, list of problems) from salt-call --out=json output."""
    try:
        data = json.loads(out)["local"]
    except (ValueError, KeyError, TypeError):
        return 0, ["salt output is not the JSON of a state run: " + out[:300]]
    if not isinstance(data, dict):
        return 0, [f"salt returned errors: {data!r}"[:500]]
    problems, changed = [], []
    for key, st in data.items():
        if not st.get("result"):
            problems.append(f"failed: {key}: {st.get('comment')}")
        if st.get("changes"):
            changed.append(key)
    if changed:
        problems.append(f"{len(changed)} states changed, e.g. {changed[:3]}")
    return len(data), problems


def tail(text, n=15):
    return "\n".join(text.strip().splitlines()[-n:])


def converge_and_verify(tool, wl, paths, workdir):
    """Converge from an emptied tree, check the state, check a second run changes nothing.
    Returns None when fine, else a reason."""
    wl.reset_tree()
    first = run_timed(wl.command(tool, paths, inform=True), workdir, f"{tool}-converge")
    if first.rc != 0:
        return f"first run exited {first.rc}:\n{tail(first.out)}\n{tail(first.err)}"
    if tool == "salt":
        nstates, probs = salt_changes(first.out)
        if [p for p in probs if p.startswith(("failed", "salt"))]:
            return "first run: " + "; ".join(probs[:5])
        want = len(wl.files) + len(wl.dirs) + len(wl.cmds)
        if nstates != want:
            return f"salt ran {nstates} states, want {want}"
    if tool == "cf-agent" and not first.out.strip() and not first.err.strip():
        return "cf-agent -I said nothing while converging an empty tree (did it run the policy?)"
    bad = wl.check_tree()
    if bad:
        return f"wrong state after converging ({len(bad)} differences): " + "; ".join(bad[:5])
    before = wl.snapshot()
    second = run_timed(wl.command(tool, paths, inform=True), workdir, f"{tool}-second")
    if second.rc != 0:
        return f"second run exited {second.rc}:\n{tail(second.out)}\n{tail(second.err)}"
    if tool == "salt":
        _, probs = salt_changes(second.out)
        if probs:
            return "second run not converged: " + "; ".join(probs[:5])
    if tool == "cf-agent":
        said = (second.out + second.err).strip()
        if said:
            return "second run with -I reported repairs:\n" + tail(said)
    if wl.snapshot() != before:
        return "second run changed the tree"
    log(f"  {tool}: converges to the expected state; second run changes nothing "
        f"({second.wall * 1000:.0f} ms)")
    return None


def bench_size(n, tools, paths, args, results, notes):
    scratch = Path(args.scratch_base) / f"opsagent-bench-{n}"
    wl = Workload(n, scratch)
    log(f"N={n}: generating workload in {scratch}")
    wl.generate()
    workdir = scratch / "runs"
    workdir.mkdir()

    ok = []
    for tool in tools:
        why = converge_and_verify(tool, wl, paths, workdir)
        if why:
            log(f"  {tool}: NOT benchmarked at N={n}: {why}")
            notes.append(f"N={n}: {tool} excluded: {why.splitlines()[0]}")
        else:
            ok.append(tool)
    # leave the tree converged (by the last tool) and make sure it is what all expect
    bad = wl.check_tree()
    if bad:
        die(f"tree not in the expected state before timing: {bad[:5]}")
    before = wl.snapshot()

    runs = {t: [] for t in ok}
    log(f"N={n}: warm-up + {args.runs} alternating runs of {', '.join(ok)}")
    for rnd in range(args.runs + 1):
        for tool in ok:
            r = run_timed(wl.command(tool, paths), workdir, f"{tool}-{rnd}")
            if r.rc != 0:
                die(f"{tool} exited {r.rc} in timed run {rnd}:\n{tail(r.out)}\n{tail(r.err)}")
            if tool == "salt":
                _, probs = salt_changes(r.out)
                if probs:
                    die(f"salt timed run {rnd} was not a converged run: {probs[:3]}")
            if rnd > 0:  # round 0 is the warm-up
                runs[tool].append(r)
    after = wl.snapshot()
    if after != before:
        changed = [p for p in set(before) | set(after) if before.get(p) != after.get(p)]
        die(f"the timed runs changed the tree: {sorted(changed)[:5]}")
    log(f"N={n}: tree unchanged over all timed runs")
    results[n] = runs

    if args.keep:
        log(f"kept {scratch}")
    else:
        shutil.rmtree(scratch)


# ---------------------------------------------------------------- report


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def summarize(runs):
    walls = [r.wall * 1000 for r in runs]
    rss = [r.rss_kib / 1024 for r in runs if r.rss_kib is not None]
    cpu = [r.cpu * 1000 for r in runs if r.cpu is not None]
    return {"med": med(walls), "min": min(walls), "max": max(walls),
            "rss": med(rss), "cpu": med(cpu), "n": len(walls)}


def ratio(a, b, fmt="{:.2f}"):
    if a is None or b is None or not b:
        return None
    return fmt.format(a / b)


def report(results, sizes, skipped_msg, versions, notes, runs_k):
    lines = ["# opsagent converged-run benchmark", ""]
    lines.append(f"Each figure: median/min/max of {runs_k} alternating converged runs after "
                 "one warm-up each; wall time by time.monotonic() around /usr/bin/time; "
                 "peak RSS by /usr/bin/time %M; CPU = user+sys.")
    lines.append("")
    for name, v in versions:
        lines.append(f"- {name}: {v}")
    if skipped_msg:
        lines.append(f"- opsagent: {skipped_msg}")
    for note in notes:
        lines.append(f"- {note}")
    lines.append("")
    summ = {n: {t: summarize(rs) for t, rs in results[n].items()} for n in results}
    for n in sizes:
        if n not in summ:
            continue
        s = summ[n]
        lines.append(f"## N = {n} ({n} files, {n // 5} dirs, {n // 5} guarded commands)")
        lines.append("")
        lines.append("| tool | median wall ms | min ms | max ms | median peak RSS MiB | median CPU ms |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for t in TOOLS:
            if t in s:
                x = s[t]
                lines.append(f"| {t} | {x['med']:.1f} | {x['min']:.1f} | {x['max']:.1f} | "
                             f"{x['rss']:.1f} | {x['cpu']:.0f} |")
            else:
                why = "skipped" if (t == "opsagent" and skipped_msg) else "excluded (see above)"
                lines.append(f"| {t} | {why} | | | | |")
        lines.append("")
        g = lambda t, k: s[t][k] if t in s else None
        na = "n/a (opsagent not run)"
        lines.append(f"- cf-agent / opsagent time: {ratio(g('cf-agent', 'med'), g('opsagent', 'med')) or na}")
        lines.append(f"- salt / opsagent time: {ratio(g('salt', 'med'), g('opsagent', 'med')) or na}")
        lines.append(f"- opsagent RSS / cf-agent RSS: {ratio(g('opsagent', 'rss'), g('cf-agent', 'rss')) or na}")
        sc = ratio(g("salt", "med"), g("cf-agent", "med"))
        if sc:
            lines.append(f"- salt / cf-agent time: {sc}")
        lines.append("")
    big, small = max(summ, default=None), min(summ, default=None)
    if big is not None and big != small:
        lines.append(f"## Scaling N={big} / N={small} (median wall time)")
        lines.append("")
        for t in TOOLS:
            r = ratio(summ[big].get(t, {}).get("med"), summ[small].get(t, {}).get("med"))
            lines.append(f"- {t}: {r + 'x' if r else 'n/a'}")
        lines.append("")
    return "\n".join(lines)


def version_of(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0] if r.returncode == 0 \
            else f"(exit {r.returncode})"
    except (OSError, IndexError, subprocess.TimeoutExpired) as e:
        return f"({e})"


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--opsagent", default=str(REPO_ROOT / "target" / "release" / "opsagent"),
                    help="opsagent binary (default: REPO/target/release/opsagent)")
    ap.add_argument("--sizes", default="100,1000", help="workload sizes N, comma-separated")
    ap.add_argument("--runs", type=int, default=7, help="timed runs per tool and size (K)")
    ap.add_argument("--cache", default="/var/tmp/opsagent-bench",
                    help="cache folder; the salt venv is CACHE/salt-venv, reused if present")
    ap.add_argument("--scratch-base", default="/tmp",
                    help="scratch dirs are SCRATCH_BASE/opsagent-bench-N")
    ap.add_argument("--out", help="also write the markdown report to this file")
    ap.add_argument("--keep", action="store_true", help="keep the scratch dirs")
    args = ap.parse_args()

    if os.geteuid() != 0:
        die("run as root (installs packages; cf-agent needs root)")
    try:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        die(f"bad --sizes {args.sizes!r}")
    if not sizes or min(sizes) < 5 or args.runs < 1:
        die("sizes must be >= 5 and --runs >= 1")

    # installs first, so nothing is installed while timing
    if not os.access(TIME_BIN, os.X_OK):
        apt_install(["time"])
    paths, tools, skipped = {}, [], None
    opsagent = Path(args.opsagent)
    if not opsagent.is_absolute():
        opsagent = (REPO_ROOT / opsagent) if not opsagent.exists() else opsagent.resolve()
    if opsagent.is_file() and os.access(opsagent, os.X_OK):
        paths["opsagent"] = opsagent
        tools.append("opsagent")
    else:
        skipped = f"skipped: no executable at {opsagent} (build it: cargo build --release)"
        log(f"opsagent {skipped}")
    paths["cf-agent"] = ensure_cf_agent()
    tools.append("cf-agent")
    paths["salt"], venv_secs = ensure_salt(Path(args.cache))
    tools.append("salt")

    versions = []
    if "opsagent" in tools:
        versions.append(("opsagent", f"{version_of([str(paths['opsagent']), '--version'])} ({paths['opsagent']})"))
    versions.append(("cf-agent --version", version_of([paths["cf-agent"], "--version"])))
    versions.append(("salt-call --version", version_of([str(paths["salt"]), "--version"])))
    for name, v in versions:
        log(f"{name}: {v}")
    notes = []
    daemons = running_daemons(["cf-execd", "cf-serverd", "cf-monitord", "salt-minion"])
    if daemons:
        notes.append(f"WARNING: background daemons running during the benchmark: {daemons}")
        log(notes[-1])
    if venv_secs is not None:
        notes.append(f"salt venv created this run in {venv_secs:.0f} s")

    results = {}
    for n in sizes:
        bench_size(n, tools, paths, args, results, notes)

    text = report(results, sizes, skipped, versions, notes, args.runs)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        log(f"report written to {args.out}")
    return 1 if any("excluded" in x for x in notes) else 0


if __name__ == "__main__":
    sys.exit(main())

//! `linux.lvm.pv`, `linux.lvm.vg`, `linux.lvm.lv` and `linux.raid` against the real lvm2 and mdadm, on
//! loop devices over image files in temp dirs. lvm runs with an `LVM_SYSTEM_DIR` of the test's own
//! (its device filter accepts only the test's loop devices, its backups stay in the scratch dir), so
//! the machine's volumes and `/etc/lvm` are never touched. Without device-mapper in the kernel, that
//! config can say `activation = 0`, and lvm then writes logical volumes' metadata only; without the
//! md driver no array can be built, and those tests print `skipped:` with the reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{changes, Run, Scratch};

/// Loop devices over image files; detached on drop.
struct Loops(Vec<String>);

impl Drop for Loops {
    fn drop(&mut self) {
        for dev in &self.0 {
            let _ = Command::new("losetup").arg("-d").arg(dev).output();
        }
    }
}

/// A scratch dir, `n` loop devices over 64 MiB image files, and an lvm config that sees only them.
/// On drop, every volume group and physical volume on them is removed, then they are detached.
struct Lab {
    s: Scratch,
    system_dir: PathBuf,
    vgs: Vec<String>,
    loops: Loops,
}

impl Lab {
    /// `None` (with the reason printed) where this machine cannot run it.
    fn new(n: usize, metadata_only: bool) -> Option<Lab> {
        if !has_tool("pvcreate") {
            assert!(std::env::var_os("CI").is_none(), "lvm2 is missing: .ci/run installs it");
            eprintln!("skipped: lvm2 is not installed (`apt-get install lvm2`)");
            return None;
        }
        let s = Scratch::new();
        let mut loops = Loops(Vec::new());
        for i in 0..n {
            let image = s.path(&format!("disk{i}.img"));
            std::fs::File::create(&image).unwrap().set_len(64 << 20).unwrap();
            let out = Command::new("losetup").arg("--find").arg("--show").arg(&image).output().unwrap();
            if !out.status.success() {
                eprintln!("skipped: no loop device here: {}", String::from_utf8_lossy(&out.stderr).trim());
                return None;
            }
            loops.0.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let system_dir = s.path("lvm");
        std::fs::create_dir(&system_dir).unwrap();
        let accept: Vec<String> = loops.0.iter().map(|d| format!("\"a|^{d}$|\"")).collect();
        let config = format!(
            "devices {{\n  filter = [ {}, \"r|.*|\" ]\n  obtain_device_list_from_udev = 0\n  use_devicesfile = 0\n}}\n\
             backup {{\n  backup_dir = \"{dir}/backup\"\n  archive_dir = \"{dir}/archive\"\n}}\n{}",
            accept.join(", "),
            if metadata_only { "global {\n  activation = 0\n}\n" } else { "" },
            dir = system_dir.display()
        );
        std::fs::write(system_dir.join("lvm.conf"), config).unwrap();
        Some(Lab { s, system_dir, vgs: Vec::new(), loops })
    }

    fn dev(&self, i: usize) -> &str {
        &self.loops.0[i]
    }

    /// A volume group name for this test, removed on drop.
    fn vg(&mut self, suffix: &str) -> String {
        let name = format!("opsagent-test-{}-{suffix}", std::process::id());
        self.vgs.push(name.clone());
        name
    }

    fn recipe(&self, name: &str, states: &[String]) -> PathBuf {
        let body: String = states.iter().map(|s| format!("  - {s}\n")).collect();
        self.s.recipe(name, &format!("states:\n{body}"))
    }

    fn apply(&self, recipe: &Path, extra: &[&str]) -> Run {
        let mut cmd = Command::new(common::bin());
        cmd.arg("apply").arg(recipe).args(extra).arg("--state-dir").arg(self.s.path("state"));
        cmd.env("NO_COLOR", "1").env("LVM_SYSTEM_DIR", &self.system_dir);
        Run::from(cmd.output().expect("run opsagent"))
    }

    /// Runs an lvm tool with this lab's config; its stdout.
    fn lvm(&self, args: &[&str]) -> String {
        let out = Command::new(args[0])
            .args(&args[1..])
            .env("LVM_SYSTEM_DIR", &self.system_dir)
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `pv_name vg_name` of each physical volume, sorted.
    fn pvs(&self) -> Vec<String> {
        let out = self.lvm(&["pvs", "--noheadings", "--separator", " ", "-o", "pv_name,vg_name"]);
        let mut rows: Vec<String> = out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
        rows.sort();
        rows
    }

    /// `lv_name size_in_bytes` of each logical volume of `vg`.
    fn lvs(&self, vg: &str) -> Vec<String> {
        let out = self.lvm(&["lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_name,lv_size", vg]);
        out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|l| !l.is_empty()).collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for vg in &self.vgs {
            self.lvm(&["vgremove", "--force", "--force", "--yes", vg]);
        }
        let mut args = vec!["pvremove", "--force", "--force", "--yes"];
        args.extend(self.loops.0.iter().map(String::as_str));
        self.lvm(&args);
    }
}

fn has_tool(tool: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().any(|d| Path::new(d).join(tool).exists())
}

/// The error of the first failed state.
fn failure(run: &Run) -> String {
    let states = run.json()["states"].as_array().unwrap().clone();
    let failed =
        states.iter().find(|s| s["status"] == "failed").unwrap_or_else(|| panic!("no state failed:\n{}", run.stdout));
    failed["comment"].as_str().unwrap().to_string()
}

/// `--test` changes nothing and predicts exactly what `apply` then does (a volume whose group an
/// earlier state creates is predicted with a note saying so, stripped here). Returns the changes.
fn predicted_then_applied(lab: &Lab, recipe: &Path) -> Vec<String> {
    let before = lab.pvs();
    let test = lab.apply(recipe, &["--json", "--test"]);
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    assert_eq!(lab.pvs(), before, "--test changed nothing");
    let run = lab.apply(recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let predicted: Vec<String> = changes(&test)
        .into_iter()
        .map(|c| match c.find("; volume group `") {
            Some(i) => format!("{})", &c[..i]),
            None => c,
        })
        .collect();
    assert_eq!(changes(&run), predicted, "--test predicted exactly what apply did");
    let again = lab.apply(recipe, &["--json"]);
    assert!(again.statuses().iter().all(|s| s.ends_with("=ok")), "a second run changes nothing: {}", again.stdout);
    changes(&run)
}

/// How a plan says that lvm writes a volume's metadata only (the lab's config without device-mapper).
const META: &str = "; metadata only: lvm.conf sets `activation = 0`";

fn blkid_type(dev: &str) -> String {
    let out = Command::new("blkid").args(["-p", "-s", "TYPE", "-o", "value", dev]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn physical_volumes_and_a_volume_group_on_loop_devices() {
    let Some(mut lab) = Lab::new(3, false) else { return };
    let vg = lab.vg("a");
    let (d0, d1, d2) = (lab.dev(0).to_string(), lab.dev(1).to_string(), lab.dev(2).to_string());
    let pv =
        |devs: &str, extra: &str| format!("{{id: pv, module: linux.lvm.pv, parameter: {{path: [{devs}]{extra}}}}}");
    let group = |devs: &str, extra: &str| {
        format!("{{id: vg, module: linux.lvm.vg, parameter: {{name: {vg}, path: \"{devs}\"{extra}}}}}")
    };

    // From scratch: a physical volume, then a group over it (with the original's string shapes).
    let recipe = lab.recipe("r.yaml", &[pv(&d0, ", zero: true"), group(&d0, ", pe-size: 8m, clustered: true")]);
    assert_eq!(
        predicted_then_applied(&lab, &recipe),
        [
            format!("create {d0} (pvcreate --zero y {d0})"),
            format!("create {vg} (vgcreate --physicalextentsize 8m {vg} {d0})")
        ]
    );
    assert_eq!(lab.pvs(), [format!("{d0} {vg}")]);
    assert!(
        lab.lvm(&["vgs", "--noheadings", "--units", "b", "--nosuffix", "-o", "vg_extent_size", &vg]).trim()
            == "8388608"
    );

    // One more device in `path`, not yet a physical volume: vgextend (which initialises it).
    let grown = lab.recipe("grown.yaml", &[group(&format!("{d0}, {d1}"), "")]);
    assert_eq!(predicted_then_applied(&lab, &grown), [format!("update {vg} (vgextend {vg} {d1})")]);
    assert_eq!(lab.pvs(), [format!("{d0} {vg}"), format!("{d1} {vg}")]);
    // A device left out of `path` stays in the group.
    assert_eq!(lab.apply(&recipe, &["--json"]).statuses(), ["pv=ok", "vg=ok"]);

    // A device holding a filesystem: refused by pv and vg alike, in --test and for real; the data kept.
    assert!(Command::new("mkfs.ext4").args(["-q", &d2]).status().unwrap().success());
    for (name, state) in [("pv2.yaml", pv(&d2, "")), ("vg2.yaml", group(&format!("{d0}, {d1}, {d2}"), ""))] {
        let r = lab.recipe(name, &[state]);
        for extra in [&["--test"][..], &[]] {
            let run = lab.apply(&r, &[&["--json", "--retries", "0"][..], extra].concat());
            assert_eq!(run.code, 1, "{}", run.stdout);
            let error = failure(&run);
            assert!(error.starts_with(&format!("`{d2}` holds a `ext4` signature; ")), "{error}");
            assert!(error.contains("would destroy it, so opsagent does not"), "{error}");
        }
    }
    assert_eq!(blkid_type(&d2), "ext4", "the filesystem is still there");
    // ... unless `force` says its data may go.
    let forced = lab.recipe("forced.yaml", &[pv(&d2, ", force: \"true\"")]);
    assert_eq!(
        predicted_then_applied(&lab, &forced),
        [format!("create {d2} (pvcreate --force --yes {d2}, wiping a `ext4` signature)")]
    );
    assert_eq!(blkid_type(&d2), "LVM2_member");

    // A device of this group is refused by another group; a missing device and an image file are refused.
    let other = lab.vg("other");
    let image = lab.s.path("disk0.img").display().to_string();
    for (state, expected) in [
        (
            format!("{{id: vg, module: linux.lvm.vg, parameter: {{name: {other}, path: [{d1}]}}}}"),
            format!("`{d1}` is a physical volume of volume group `{vg}`; opsagent never takes a device out of a volume group implicitly"),
        ),
        (pv("/dev/opsagent-test-none", ""), "`/dev/opsagent-test-none` does not exist".to_string()),
        (pv(&image, ""), format!("`{image}` is not a block device; attach an image file with `losetup`")),
    ] {
        let run = lab.apply(&lab.recipe("refused.yaml", &[state]), &["--json", "--retries", "0", "--test"]);
        assert!(failure(&run).starts_with(&expected), "{expected}\n{}", run.stdout);
    }

    // A device of the group cannot be removed as a physical volume; the group can, when asked.
    let pv_gone = lab.recipe("pv-gone.yaml", &[pv(&format!("{d0}, {d1}, {d2}"), ", absent: true")]);
    let run = lab.apply(&pv_gone, &["--json", "--retries", "0", "--test"]);
    assert!(failure(&run).contains(&format!("is a physical volume of volume group `{vg}`")), "{}", run.stdout);
    let vg_gone = lab.recipe(
        "vg-gone.yaml",
        &[format!("{{id: vg, module: linux.lvm.vg, parameter: {{name: {vg}, absent: true}}}}")],
    );
    assert_eq!(predicted_then_applied(&lab, &vg_gone), [format!("remove {vg} (vgremove {vg})")]);
    assert_eq!(lab.pvs(), [d0.clone(), d1.clone(), d2.clone()], "the physical volumes stay");
    assert_eq!(
        predicted_then_applied(&lab, &pv_gone),
        [
            format!("remove {d0} (pvremove {d0})"),
            format!("remove {d1} (pvremove {d1})"),
            format!("remove {d2} (pvremove {d2})")
        ]
    );
    assert!(lab.pvs().is_empty());
    assert_eq!(blkid_type(&d0), "", "the label is wiped");
}

#[test]
fn logical_volume_metadata_is_created_grown_never_shrunk_and_removed_when_asked() {
    // Without device-mapper in the kernel, lvm can write logical volumes' metadata only (activation
    // disabled in the lab's lvm.conf); with it, the same config keeps the test off the kernel too.
    let Some(mut lab) = Lab::new(2, true) else { return };
    let vg = lab.vg("b");
    let (d0, d1) = (lab.dev(0).to_string(), lab.dev(1).to_string());
    let base =
        [format!("{{id: vg, module: linux.lvm.vg, parameter: {{name: {vg}, path: [{d0}, {d1}]}}}}"), String::new()];
    let with_lv = |name: &str, params: &str| {
        let mut states = base.to_vec();
        states[1] = format!("{{id: lv, module: linux.lvm.lv, parameter: {{name: data, vg-name: {vg}{params}}}}}");
        lab.recipe(name, &states)
    };

    let recipe = with_lv("r.yaml", ", le-size: 10m");
    let test = lab.apply(&recipe, &["--json", "--test"]);
    assert_eq!(
        changes(&test)[1],
        format!(
            "create {vg}/data (lvcreate --yes --name data --size 10m {vg}; metadata only: lvm.conf sets `activation = \
             0`; volume group `{vg}` does not exist yet: an \
             earlier state must create it)"
        ),
        "the volume is planned after its group"
    );
    assert_eq!(
        predicted_then_applied(&lab, &recipe),
        [
            format!("create {vg} (vgcreate {vg} {d0} {d1})"),
            format!("create {vg}/data (lvcreate --yes --name data --size 10m {vg}{META})")
        ]
    );
    assert_eq!(lab.lvs(&vg), ["data 12582912"], "10m rounded up to 3 extents of 4 MiB");
    // 12m is what it is already: fine.
    assert_eq!(lab.apply(&with_lv("same.yaml", ", le-size: 12M"), &["--json"]).statuses(), ["vg=ok", "lv=ok"]);

    // Bigger: extended, with the sizes before and after predicted.
    let bigger = with_lv("bigger.yaml", ", le-size: \"24\"");
    assert_eq!(
        predicted_then_applied(&lab, &bigger),
        [format!("update {vg}/data (12.00 MiB -> 24.00 MiB: lvextend --size 24 {vg}/data{META})")]
    );
    assert_eq!(lab.lvs(&vg), ["data 25165824"]);
    let by_extents = with_lv("extents.yaml", ", le-number: 8");
    assert_eq!(
        predicted_then_applied(&lab, &by_extents),
        [format!("update {vg}/data (24.00 MiB -> 32.00 MiB: lvextend --extents 8 {vg}/data{META})")]
    );

    // Smaller: refused, in --test and for real; the volume keeps its size.
    let smaller = with_lv("smaller.yaml", ", le-size: 8m");
    for extra in [&["--test"][..], &[]] {
        let run = lab.apply(&smaller, &[&["--json", "--retries", "0"][..], extra].concat());
        assert_eq!(run.code, 1);
        assert_eq!(
            failure(&run),
            format!(
                "`/dev/{vg}/data` is 32.00 MiB (8 extents), larger than the 8.00 MiB (2 extents) asked for; opsagent \
                 never shrinks a logical volume, because that destroys the data at its end: ask for at least its size, \
                 or shrink its filesystem and then the volume (`lvreduce`) by hand"
            )
        );
    }
    assert_eq!(lab.lvs(&vg), ["data 33554432"]);

    // A volume in a group that does not exist fails for real (`--test` plans it after its group).
    let orphan = lab.recipe(
        "orphan.yaml",
        &["{id: lv, module: linux.lvm.lv, parameter: {name: x, vg-name: opsagent-test-none, le-size: 4m}}".to_string()],
    );
    let run = lab.apply(&orphan, &["--json", "--retries", "0"]);
    assert_eq!(
        failure(&run),
        "`/dev/opsagent-test-none/x` cannot be created: volume group `opsagent-test-none` does not exist; create it \
         first (a `linux.lvm.vg` state before this one)"
    );

    // A percentage is used at creation only.
    let rest = lab.recipe(
        "rest.yaml",
        &[format!("{{id: lv, module: linux.lvm.lv, parameter: {{name: rest, vg-name: {vg}, le-number: 100%FREE}}}}")],
    );
    assert_eq!(
        predicted_then_applied(&lab, &rest),
        [format!("create {vg}/rest (lvcreate --yes --name rest --extents 100%FREE {vg}{META})")]
    );
    assert_eq!(lab.lvs(&vg).len(), 2);

    // The group is not removed while it holds volumes; the volumes are, when asked.
    let vg_gone = lab.recipe(
        "vg-gone.yaml",
        &[format!("{{id: vg, module: linux.lvm.vg, parameter: {{name: {vg}, absent: true}}}}")],
    );
    let run = lab.apply(&vg_gone, &["--json", "--retries", "0"]);
    assert!(failure(&run).contains("still holds 2 logical volume(s)"), "{}", run.stdout);
    let gone = lab.recipe(
        "gone.yaml",
        &[
            format!("{{id: data, module: linux.lvm.lv, parameter: {{name: data, vg-name: {vg}, absent: true}}}}"),
            format!("{{id: rest, module: linux.lvm.lv, parameter: {{name: rest, vg-name: {vg}, absent: true}}}}"),
        ],
    );
    assert_eq!(
        predicted_then_applied(&lab, &gone),
        [
            format!("remove {vg}/data (lvremove --yes {vg}/data)"),
            format!("remove {vg}/rest (lvremove --yes {vg}/rest)")
        ]
    );
    assert!(lab.lvs(&vg).is_empty());
}

#[test]
fn a_logical_volume_without_device_mapper_fails_with_one_clear_line() {
    let misc = std::fs::read_to_string("/proc/misc").unwrap_or_default();
    if misc.lines().any(|l| l.split_whitespace().nth(1) == Some("device-mapper")) {
        eprintln!("skipped: this kernel has device-mapper, so lvcreate works here and there is no such error to show");
        return;
    }
    // lvm's own default (activation on), as on a real machine.
    let Some(mut lab) = Lab::new(1, false) else { return };
    let vg = lab.vg("c");
    let d0 = lab.dev(0).to_string();
    let recipe = lab.recipe(
        "r.yaml",
        &[
            format!("{{id: vg, module: linux.lvm.vg, parameter: {{name: {vg}, path: [{d0}]}}}}"),
            format!("{{id: lv, module: linux.lvm.lv, parameter: {{name: data, vg-name: {vg}, le-size: 8m}}}}"),
        ],
    );
    let expected = format!(
        "`/dev/{vg}/data` cannot be created: this kernel has no device-mapper (/proc/misc lists no `device-mapper`), \
         so lvm can neither create nor activate a logical volume here: use a kernel with device-mapper (`modprobe dm_mod`)"
    );
    let test = lab.apply(&recipe, &["--json", "--retries", "0", "--test"]);
    assert_eq!(failure(&test), expected);
    let run = lab.apply(&recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.statuses(), ["vg=changed", "lv=failed"]);
    assert_eq!(failure(&run), expected, "one line, not lvm's output");
    let lv = &run.json()["states"][1];
    assert!(lv["stdout"].is_null() && lv["stderr"].is_null(), "lvcreate never ran: {lv}");
    assert!(lab.lvs(&vg).is_empty());
    // The human report says it in one line too.
    let text = lab.apply(&recipe, &["--retries", "0"]);
    let lines: Vec<&str> = text.stdout.lines().filter(|l| l.contains("device-mapper")).collect();
    assert_eq!(lines.len(), 1, "{}", text.stdout);
    assert!(!text.stdout.contains("/dev/mapper/control: open failed"), "{}", text.stdout);
}

#[test]
fn missing_lvm_tools_are_named() {
    let s = Scratch::new();
    let recipe = s.recipe(
        "r.yaml",
        "states:\n  - {id: pv, module: linux.lvm.pv, parameter: {path: [/dev/opsagent-test-none]}}\n  - {id: vg, module: linux.lvm.vg, parameter: {name: opsagent-test-x, path: [/dev/opsagent-test-none]}}\n  - {id: lv, module: linux.lvm.lv, parameter: {name: x, vg-name: opsagent-test-x, le-size: 1g}}\n",
    );
    let empty = s.path("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(common::bin())
        .arg("apply")
        .arg(&recipe)
        .args(["--json", "--retries", "0", "--keep-going", "--state-dir"])
        .arg(s.path("state"))
        .env("PATH", &empty)
        .output()
        .unwrap();
    let run = Run::from(out);
    let comments: Vec<String> = run.json()["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["comment"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        comments,
        [
            "`pvs` is not installed on this machine; install the `lvm2` package (an earlier `linux.apt.package` state can)",
            "`vgs` is not installed on this machine; install the `lvm2` package (an earlier `linux.apt.package` state can)",
            "`vgs` is not installed on this machine; install the `lvm2` package (an earlier `linux.apt.package` state can)",
        ],
        "{}",
        run.stdout
    );
}

#[test]
fn raid_without_the_md_driver_fails_with_one_clear_line() {
    if Path::new("/proc/mdstat").exists() {
        eprintln!("skipped: this kernel has the md driver (the array test below runs instead)");
        return;
    }
    let Some(lab) = Lab::new(2, false) else { return };
    let (d0, d1) = (lab.dev(0).to_string(), lab.dev(1).to_string());
    let md = format!("/dev/md/opsagent-test-{}", std::process::id());
    let recipe = lab.recipe(
        "r.yaml",
        &[format!("{{id: raid, module: linux.raid, parameter: {{device-name: {md}, level: mirror, devices: [{d0}, {d1}], arguments: [{{key: chunk, value: \"256\"}}]}}}}")],
    );
    let expected = format!(
        "`{md}` cannot be created: this kernel has no md driver (`/proc/mdstat` is missing), so mdadm cannot build an \
         array here: use a kernel with software RAID (`modprobe md_mod`)"
    );
    for extra in [&["--test"][..], &[]] {
        let run = lab.apply(&recipe, &[&["--json", "--retries", "0"][..], extra].concat());
        assert_eq!(run.code, 1);
        assert_eq!(failure(&run), expected);
    }
    assert!(!Path::new(&md).exists(), "mdadm never ran (it would leave device nodes behind)");
    assert_eq!(blkid_type(&d0), "", "nothing was written");
    // No md driver, no array: absent is already fine.
    let gone = lab.recipe(
        "gone.yaml",
        &[format!("{{id: raid, module: linux.raid, parameter: {{device-name: {md}, absent: true}}}}")],
    );
    assert_eq!(lab.apply(&gone, &["--json"]).statuses(), ["raid=ok"]);
}

#[test]
fn raid1_on_loop_devices() {
    if !Path::new("/proc/mdstat").exists() {
        eprintln!("skipped: this kernel has no md driver (/proc/mdstat is missing), so mdadm --create cannot run here");
        return;
    }
    if !has_tool("mdadm") {
        assert!(std::env::var_os("CI").is_none(), "mdadm is missing: .ci/run installs it");
        eprintln!("skipped: mdadm is not installed (`apt-get install mdadm`)");
        return;
    }
    let Some(lab) = Lab::new(2, false) else { return };
    let (d0, d1) = (lab.dev(0).to_string(), lab.dev(1).to_string());
    let md = format!("/dev/md/opsagent-test-{}", std::process::id() % 10000);
    struct Stop(String, Vec<String>);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("mdadm").args(["--stop", &self.0]).output();
            let _ = Command::new("mdadm").arg("--zero-superblock").args(&self.1).output();
        }
    }
    let _stop = Stop(md.clone(), vec![d0.clone(), d1.clone()]);
    let recipe = lab.recipe(
        "r.yaml",
        &[format!("{{id: raid, module: linux.raid, parameter: {{device-name: {md}, level: \"1\", devices: [{d0}, {d1}], arguments: {{metadata: \"1.2\"}}}}}}")],
    );
    let test = lab.apply(&recipe, &["--json", "--test"]);
    assert_eq!(
        changes(&test),
        [format!("create {md} (mdadm --create {md} --run --level=raid1 --raid-devices=2 --metadata=1.2 {d0} {d1})")]
    );
    let run = lab.apply(&recipe, &["--json", "--retries", "0"]);
    assert_eq!(changes(&run), changes(&test), "{}{}", run.stdout, run.stderr);
    assert_eq!(blkid_type(&d0), "linux_raid_member");
    assert_eq!(lab.apply(&recipe, &["--json"]).statuses(), ["raid=ok"]);

    let gone = lab.recipe(
        "gone.yaml",
        &[format!("{{id: raid, module: linux.raid, parameter: {{device-name: {md}, absent: true}}}}")],
    );
    let run = lab.apply(&gone, &["--json", "--retries", "0"]);
    assert_eq!(run.statuses(), ["raid=changed"], "{}", run.stdout);
    assert_eq!(blkid_type(&d0), "", "the superblocks are erased");
    assert_eq!(lab.apply(&gone, &["--json"]).statuses(), ["raid=ok"]);
}

#[test]
fn bad_parameters_are_clear() {
    let s = Scratch::new();
    let bad = s.recipe(
        "bad.yaml",
        "states:\n  - {id: p, module: linux.lvm.pv, parameter: {path: [sdb], metadata-type: lvm1, metadata-copies: \"3\", pv-size: 10q, uuid: abc, no-restore-file: false}}\n  - {id: v, module: linux.lvm.vg, parameter: {name: \"my vg\", pe-size: big, allocation-policy: best}}\n  - {id: l, module: linux.lvm.lv, parameter: {name: data, vg-name: vg0, le-number: \"50%DISK\", available: maybe, stripe-number: two}}\n  - {id: s, module: linux.lvm.lv, parameter: {name: data, vg-name: vg0, le-size: 1g, le-number: \"10\", sise: 1g}}\n  - {id: r, module: linux.raid, parameter: {device-name: md0, level: raid7, devices: [], arguments: {force: null, \"bad key\": 1}}}\n",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "`p` (linux.lvm.pv): parameter `path`: `sdb` is not an absolute path",
        "`lvm1` is not a metadata type this lvm supports",
        "`3` is not one of `0`, `1`, `2`",
        "parameter `pv-size`: `10q` is not a size",
        "`uuid` needs a `restore-file`, or `no-restore-file: true`",
        "`v` (linux.lvm.vg): parameter `name`: `my vg` is not a valid lvm name",
        "required parameter `path` is missing",
        "parameter `pe-size`: `big` is not a size",
        "`best` is not one of `anywhere`, `contiguous`, `cling`, `inherit`, `normal`",
        "parameter `le-number`: `50%DISK` is not a number of extents",
        "`maybe` is not one of `y`, `ay`, `n`, `ey`, `en`, `ly`, `ln`",
        "parameter `stripe-number`: expected a whole number, found `two`",
        "`le-size` and `le-number` are both given",
        "unknown parameter `sise`",
        "`r` (linux.raid): parameter `device-name`: `md0` is not an absolute path",
        "`raid7` is not a RAID level",
        "parameter `devices`: names no device",
        "`force` cannot be given in `arguments`",
        "`bad key` is not an mdadm option",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    // `clustered` (no clustered locking in lvm2 2.03) is accepted with a warning.
    let ok = s.recipe(
        "ok.yaml",
        "states:\n  - {id: v, module: linux.lvm.vg, parameter: {name: vg0, path: \"/dev/xvdf, /dev/xvdg\", clustered: true}}\n",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&ok).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("parameter `clustered` is accepted for compatibility and ignored"), "{stderr}");
}

//! `linux.mount` and `linux.mkfs` against the real kernel: tmpfs mounts in temp dirs, ext4 on a
//! loop device and on a plain image file, and `/etc/fstab` (backed up and restored byte-identical).
//! Parts the kernel refuses here (no mounts, no loop devices) are skipped with the reason printed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::{changes, Scratch};

/// Tests that mount or touch `/etc/fstab` run one at a time.
static MACHINE: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    MACHINE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Unmounts everything still mounted at its paths (stacked mounts too), on drop.
struct Mounts(Vec<PathBuf>);

impl Drop for Mounts {
    fn drop(&mut self) {
        for path in &self.0 {
            for _ in 0..5 {
                if !mounted_at(path) {
                    break;
                }
                let _ = Command::new("umount").arg("-l").arg(path).output();
            }
        }
    }
}

/// Restores `/etc/fstab` byte-identical (content and mode), on drop.
struct FstabGuard(Option<Vec<u8>>, Option<std::fs::Permissions>);

impl FstabGuard {
    fn new() -> FstabGuard {
        FstabGuard(std::fs::read("/etc/fstab").ok(), std::fs::metadata("/etc/fstab").ok().map(|m| m.permissions()))
    }
}

impl Drop for FstabGuard {
    fn drop(&mut self) {
        match &self.0 {
            Some(bytes) => {
                std::fs::write("/etc/fstab", bytes).unwrap();
                if let Some(perms) = &self.1 {
                    std::fs::set_permissions("/etc/fstab", perms.clone()).unwrap();
                }
            }
            None => {
                let _ = std::fs::remove_file("/etc/fstab");
            }
        }
    }
}

/// A loop device over an image file; detached on drop.
struct Loop(String);

impl Loop {
    fn attach(image: &Path) -> Result<Loop, String> {
        let out = Command::new("losetup").arg("--find").arg("--show").arg(image).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Loop(String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).output();
    }
}

/// The mountinfo lines for `path` (`fstype source superoptions` and the mount options).
fn mount_lines(path: &Path) -> Vec<String> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
        .map(String::from)
        .collect()
}

fn mounted_at(path: &Path) -> bool {
    !mount_lines(path).is_empty()
}

/// Whether this kernel lets us mount a tmpfs; prints why not.
fn can_mount(s: &Scratch) -> bool {
    let probe = s.path("probe");
    std::fs::create_dir(&probe).unwrap();
    let out = Command::new("mount").args(["-t", "tmpfs", "opsagent-test-probe"]).arg(&probe).output().unwrap();
    if !out.status.success() {
        eprintln!("skipped: this kernel does not let us mount a tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        return false;
    }
    let _ = Command::new("umount").arg(&probe).output();
    true
}

/// Runs with `--test`, checks that it changed nothing observable, runs for real, and checks that the
/// changes made are the ones predicted. Returns them.
fn predicted_then_applied(s: &Scratch, recipe: &Path, watch: &Path) -> Vec<String> {
    let before = (mount_lines(watch), std::fs::read("/etc/fstab").ok(), watch.exists());
    let test = s.apply(recipe, &["--json", "--test"]);
    assert_eq!(test.code, 0, "{}{}", test.stdout, test.stderr);
    assert_eq!(
        (mount_lines(watch), std::fs::read("/etc/fstab").ok(), watch.exists()),
        before,
        "--test changed nothing"
    );
    let run = s.apply(recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(changes(&run), changes(&test), "--test predicted exactly what apply did");
    changes(&run)
}

fn tmpfs_recipe(s: &Scratch, name: &str, params: &str) -> PathBuf {
    let device = format!("opsagent-test-{}", std::process::id());
    s.recipe(
        name,
        &format!("states:\n  - {{id: mnt, module: linux.mount, parameter: {{path: \"@/mnt\", device: {device}, filesystem: tmpfs{params}}}}}\n"),
    )
}

#[test]
fn tmpfs_mounts_remounts_repairs_and_unmounts() {
    let _lock = lock();
    let s = Scratch::new();
    if !can_mount(&s) {
        return;
    }
    let mnt = s.path("mnt");
    let _mounts = Mounts(vec![mnt.clone()]);
    let shown = mnt.display().to_string();
    let device = format!("opsagent-test-{}", std::process::id());

    let recipe = tmpfs_recipe(&s, "r.yaml", ", opts: \"size=4m,mode=0750\"");
    assert_eq!(
        predicted_then_applied(&s, &recipe, &mnt),
        [
            format!("create {shown} (mount point, mode 0755)"),
            format!("create {shown} (mount {device} (tmpfs, size=4m,mode=0750))")
        ]
    );
    let lines = mount_lines(&mnt);
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains(&format!(" - tmpfs {device} ")) && lines[0].contains("size=4096k"), "{lines:?}");
    assert_eq!(s.apply(&recipe, &["--json"]).statuses(), ["mnt=ok"], "a second run changes nothing");

    // Other options: a remount, predicted.
    let bigger = tmpfs_recipe(&s, "bigger.yaml", ", opts: \"size=8m,mode=0750,nosuid\"");
    assert_eq!(
        predicted_then_applied(&s, &bigger, &mnt),
        [format!("update {shown} (remount: size=8m,nosuid not in effect)")]
    );
    assert!(mount_lines(&mnt)[0].contains("size=8192k"), "{:?}", mount_lines(&mnt));
    assert!(mount_lines(&mnt)[0].contains("nosuid"), "{:?}", mount_lines(&mnt));
    assert_eq!(s.apply(&bigger, &["--json"]).statuses(), ["mnt=ok"]);

    // Drift: unmounted by hand, mounted again.
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    assert_eq!(
        predicted_then_applied(&s, &bigger, &mnt),
        [format!("create {shown} (mount {device} (tmpfs, size=8m,mode=0750,nosuid))")]
    );
    assert!(mounted_at(&mnt));

    // Something else mounted there: unmounted, then ours mounted.
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    assert!(Command::new("mount").args(["-t", "tmpfs", "opsagent-test-other"]).arg(&mnt).status().unwrap().success());
    assert_eq!(
        predicted_then_applied(&s, &bigger, &mnt),
        [
            format!("remove {shown} (unmount opsagent-test-other (tmpfs))"),
            format!("create {shown} (mount {device} (tmpfs, size=8m,mode=0750,nosuid))")
        ]
    );
    assert_eq!(mount_lines(&mnt).len(), 1);

    // mounted: false.
    let gone = tmpfs_recipe(&s, "gone.yaml", ", mounted: false");
    assert_eq!(predicted_then_applied(&s, &gone, &mnt), [format!("remove {shown} (unmount {device} (tmpfs))")]);
    assert!(!mounted_at(&mnt));
    assert!(mnt.is_dir(), "the mount point stays");
    assert_eq!(s.apply(&gone, &["--json"]).statuses(), ["mnt=ok"]);
}

#[test]
fn fstab_lines_are_added_and_removed_leaving_the_rest_byte_identical() {
    let _lock = lock();
    let s = Scratch::new();
    if !can_mount(&s) {
        return;
    }
    let mnt = s.path("mnt");
    let _fstab = FstabGuard::new();
    let _mounts = Mounts(vec![mnt.clone()]);
    let shown = mnt.display().to_string();
    let device = format!("opsagent-test-{}", std::process::id());
    let original = std::fs::read_to_string("/etc/fstab").unwrap_or_default();

    let recipe = tmpfs_recipe(&s, "r.yaml", ", opts: \"size=4m\", pass: \"0\", dump: 0, fstab: true");
    let line = format!("{device} {shown} tmpfs size=4m 0 0\n");
    let made = predicted_then_applied(&s, &recipe, &mnt);
    assert_eq!(made.last().unwrap(), &format!("update /etc/fstab (line for {shown}: {})", line.trim_end()));
    let after = std::fs::read_to_string("/etc/fstab").unwrap();
    let prefix =
        if original.is_empty() || original.ends_with('\n') { original.clone() } else { format!("{original}\n") };
    assert_eq!(after, format!("{prefix}{line}"), "the other lines are untouched");
    assert_eq!(s.apply(&recipe, &["--json"]).statuses(), ["mnt=ok"]);

    // The line edited by hand: put back, the rest untouched.
    std::fs::write("/etc/fstab", format!("{prefix}{device} {shown} tmpfs size=2m 0 0\n# after\n")).unwrap();
    assert_eq!(predicted_then_applied(&s, &recipe, &mnt), [made.last().unwrap().clone()]);
    assert_eq!(std::fs::read_to_string("/etc/fstab").unwrap(), format!("{prefix}{line}# after\n"));
    std::fs::write("/etc/fstab", after.as_bytes()).unwrap();

    // Unmounted and out of fstab: the file is the original again, byte for byte.
    let gone = tmpfs_recipe(&s, "gone.yaml", ", fstab: true, mounted: false");
    assert_eq!(
        predicted_then_applied(&s, &gone, &mnt),
        [
            format!("remove {shown} (unmount {device} (tmpfs))"),
            format!("update /etc/fstab (remove the line for {shown})")
        ]
    );
    assert!(!mounted_at(&mnt));
    assert_eq!(std::fs::read_to_string("/etc/fstab").unwrap(), prefix);
    assert_eq!(s.apply(&gone, &["--json"]).statuses(), ["mnt=ok"]);
}

/// The SHA-256 of a file, to show it was not written.
fn digest(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split(' ').next().unwrap().to_string()
}

fn blkid(device: &str, tag: &str) -> String {
    let out = Command::new("blkid").args(["-p", "-s", tag, "-o", "value", device]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn mkfs_recipe(s: &Scratch, name: &str, device: &str, fstype: &str) -> PathBuf {
    s.recipe(
        name,
        &format!("states:\n  - {{id: fs, module: linux.mkfs, parameter: {{device: \"{device}\", fstype: {fstype}, label: opsagent-t}}}}\n"),
    )
}

#[test]
fn mkfs_formats_an_image_once_and_never_reformats() {
    let s = Scratch::new();
    let image = s.path("disk.img");
    std::fs::File::create(&image).unwrap().set_len(16 << 20).unwrap();
    let shown = image.display().to_string();
    let recipe = mkfs_recipe(&s, "r.yaml", &shown, "ext4");

    let test = s.apply(&recipe, &["--json", "--test"]);
    assert_eq!(changes(&test), [format!("create {shown} (mkfs -t ext4 -L opsagent-t)")]);
    assert_eq!(blkid(&shown, "TYPE"), "", "--test wrote nothing");
    let run = s.apply(&recipe, &["--json", "--retries", "0"]);
    assert_eq!(changes(&run), changes(&test), "{}", run.stdout);
    assert_eq!(blkid(&shown, "TYPE"), "ext4");
    assert_eq!(blkid(&shown, "LABEL"), "opsagent-t");
    let before = digest(&image);
    assert_eq!(s.apply(&recipe, &["--json"]).statuses(), ["fs=ok"]);
    assert_eq!(digest(&image), before, "a second run does not touch the device");

    // Another filesystem asked for: an error, the data kept.
    let xfs = mkfs_recipe(&s, "xfs.yaml", &shown, "btrfs");
    for extra in [&["--test"][..], &[]] {
        let run = s.apply(&xfs, &[&["--json", "--retries", "0"][..], extra].concat());
        assert_eq!(run.code, 1, "{}", run.stdout);
        let comment = run.json()["states"][0]["comment"].as_str().unwrap().to_string();
        assert!(comment.contains("already holds a `ext4` filesystem, not `btrfs`"), "{comment}");
        assert!(comment.contains("never reformats"), "{comment}");
    }
    assert_eq!(digest(&image), before, "the filesystem was not touched");

    // A missing tool is named.
    let other = s.path("other.img");
    std::fs::File::create(&other).unwrap().set_len(1 << 20).unwrap();
    let run = s.apply(&mkfs_recipe(&s, "zz.yaml", &other.display().to_string(), "zzfs"), &["--json", "--retries", "0"]);
    let comment = run.json()["states"][0]["comment"].as_str().unwrap().to_string();
    assert!(comment.contains("`mkfs.zzfs` is not installed on this machine"), "{comment}");

    // A device that does not exist.
    let run = s.apply(&mkfs_recipe(&s, "no.yaml", "/dev/opsagent-test-none", "ext4"), &["--json", "--retries", "0"]);
    assert!(run.json()["states"][0]["comment"].as_str().unwrap().contains("does not exist"), "{}", run.stdout);
}

#[test]
fn ext4_on_a_loop_device_is_formatted_and_mounted_by_label() {
    let _lock = lock();
    let s = Scratch::new();
    if !can_mount(&s) {
        return;
    }
    let image = s.path("disk.img");
    std::fs::File::create(&image).unwrap().set_len(16 << 20).unwrap();
    let dev = match Loop::attach(&image) {
        Ok(dev) => dev,
        Err(why) => {
            eprintln!("skipped: no loop device here: {why}");
            return;
        }
    };
    let mnt = s.path("data");
    let _mounts = Mounts(vec![mnt.clone()]);
    let label = format!("opsagent-t{}", std::process::id() % 10000);
    let recipe = s.recipe(
        "r.yaml",
        &format!(
            "states:\n  - {{id: fs, module: linux.mkfs, parameter: {{device: {dev}, fstype: ext4, label: {label}}}}}\n  - {{id: mnt, module: linux.mount, parameter: {{path: \"@/data\", device: {dev}, filesystem: ext4, opts: noatime}}}}\n",
            dev = dev.0
        ),
    );
    let run = s.apply(&recipe, &["--json", "--retries", "0"]);
    assert_eq!(run.statuses(), ["fs=changed", "mnt=changed"], "{}{}", run.stdout, run.stderr);
    let lines = mount_lines(&mnt);
    assert!(lines[0].contains(&format!(" - ext4 {} ", dev.0)) && lines[0].contains("noatime"), "{lines:?}");
    assert_eq!(s.apply(&recipe, &["--json"]).statuses(), ["fs=ok", "mnt=ok"]);

    // The same filesystem named by its label, or by the image file (a loop mount): already fine.
    for device in [format!("LABEL={label}"), image.display().to_string()] {
        let by = s.recipe(
            "by.yaml",
            &format!("states:\n  - {{id: mnt, module: linux.mount, parameter: {{path: \"@/data\", device: \"{device}\", filesystem: ext4, opts: \"noatime,loop\"}}}}\n"),
        );
        let run = s.apply(&by, &["--json"]);
        assert_eq!(run.statuses(), ["mnt=ok"], "{device}: {}", run.stdout);
    }
}

#[test]
fn bad_parameters_are_clear() {
    let s = Scratch::new();
    let bad = s.recipe(
        "bad.yaml",
        "states:\n  - {id: m, module: linux.mount, parameter: {path: data, filesystem: \"ext 4\", opts: \"a b\", dump: x, mounted: maybe}}\n  - {id: f, module: linux.mkfs, parameter: {device: /dev/xvdf, fstype: \"ext4;rm\", label: -x}}\n",
    );
    let out = Command::new(common::bin()).arg("validate").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "`data` is not an absolute path",
        "required parameter `device` is missing",
        "`ext 4` is not a filesystem type",
        "`a b` is not a mount option",
        "expected a whole number, found `x`",
        "expected true or false, found `maybe`",
        "`ext4;rm` is not a filesystem type",
        "`-x` is not a usable label",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn bind_mounts_are_recognised_by_the_directory_they_show() {
    let _lock = lock();
    let s = Scratch::new();
    if !can_mount(&s) {
        return;
    }
    let (src, mnt) = (s.path("src"), s.path("bind"));
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("marker"), "here\n").unwrap();
    let _mounts = Mounts(vec![mnt.clone()]);
    let recipe = s.recipe(
        "r.yaml",
        "states:\n  - {id: b, module: linux.mount, parameter: {path: \"@/bind\", device: \"@/src\", filesystem: none, opts: bind}}\n",
    );
    let made = predicted_then_applied(&s, &recipe, &mnt);
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!(std::fs::read_to_string(mnt.join("marker")).unwrap(), "here\n");
    assert_eq!(s.apply(&recipe, &["--json"]).statuses(), ["b=ok"]);
}

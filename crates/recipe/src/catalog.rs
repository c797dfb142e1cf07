//! The module ids of the recipe language: every id of the original VisualOps table, so that a
//! recipe written for the original is recognised even where a module is not implemented yet, and
//! the one table of the original's other spellings: module id aliases, parameter aliases per
//! module, and parameters accepted and ignored.

/// Every module id the original OpsAgent's IDE could emit (`original-module-schema.json`).
pub const ORIGINAL_MODULES: &[&str] = &[
    "meta.comment",
    "meta.wait",
    "linux.apt.package",
    "linux.apt.ppa",
    "linux.apt.repo",
    "linux.yum.package",
    "linux.yum.repo",
    "linux.rpm.key",
    "common.pip.package",
    "common.gem.package",
    "common.npm.package",
    "common.git",
    "common.svn",
    "common.hg",
    "common.archive",
    "common.timezone",
    "common.virtualenv",
    "linux.dir",
    "linux.file",
    "linux.symlink",
    "linux.service",
    "linux.supervisord",
    "linux.cmd",
    "linux.cronjob",
    "linux.user",
    "linux.group",
    "linux.mount",
    "linux.mkfs",
    "linux.lvm.pv",
    "linux.lvm.vg",
    "linux.lvm.lv",
    "linux.raid",
    "linux.docker.pulled",
    "linux.docker.built",
    "linux.docker.running",
    "linux.docker.pushed",
    "linux.docker.deploy",
    "linux.puppet.apply",
    "linux.puppet.run",
    "linux.puppet.agent",
    "linux.chef.client",
    "linux.chef.solo",
    "linux.mesos.master",
    "linux.mesos.slave",
];

/// Module ids of ours, beyond the original's: `meta.hold`, which the hub writes in place of a
/// state whose links it cannot resolve yet.
pub const OUR_MODULES: &[&str] = &["meta.hold"];

/// Whether `id` names a module of the recipe language (implemented or not).
pub fn is_known_module(id: &str) -> bool {
    ORIGINAL_MODULES.contains(&id) || OUR_MODULES.contains(&id)
}

/// Other spellings of module ids that recipes written for the original use: the IDE's group names
/// (`linux pv`, `linux apt pkg`, `meta #`) and ids with spaces, `_` or `-` instead of dots. Keys are
/// in the form [`normalize_module`] gives.
pub const MODULE_ALIASES: &[(&str, &str)] = &[
    ("meta.#", "meta.comment"),
    ("linux.apt.pkg", "linux.apt.package"),
    ("linux.yum.pkg", "linux.yum.package"),
    ("common.pip", "common.pip.package"),
    ("common.gem", "common.gem.package"),
    ("common.npm", "common.npm.package"),
    ("linux.pv", "linux.lvm.pv"),
    ("linux.vg", "linux.lvm.vg"),
    ("linux.lv", "linux.lvm.lv"),
    ("linux.filesystem", "linux.mkfs"),
    ("linux.docker", "linux.docker.deploy"),
];

/// The module id that `id` names: itself when it is one, else the id its older or spaced spelling
/// stands for (`linux lvm pv`, `Linux.LVM.PV`, `linux pv` → `linux.lvm.pv`); `None` when unknown.
pub fn canonical_module(id: &str) -> Option<&'static str> {
    if let Some(known) = ORIGINAL_MODULES.iter().find(|m| **m == id) {
        return Some(known);
    }
    let normalized = normalize_module(id);
    if let Some(known) = ORIGINAL_MODULES.iter().find(|m| **m == normalized) {
        return Some(known);
    }
    MODULE_ALIASES.iter().find(|(alias, _)| *alias == normalized).map(|(_, ours)| *ours)
}

/// A module id in lower case, with runs of spaces, `_`, `-` and `.` as one dot.
pub fn normalize_module(id: &str) -> String {
    let lower = id.trim().to_lowercase();
    let parts: Vec<&str> = lower.split([' ', '_', '-', '.', '\t']).filter(|p| !p.is_empty()).collect();
    parts.join(".")
}

/// Parameters the original (or the Salt states behind it) knew under another name, per module id:
/// `(module, alias, our name)`. [`crate::ParamReader`] reads an alias as our name, with a warning
/// naming both. Spellings that differ from ours only in case, `_` or spaces (`verify_gpg`, `use_utc`,
/// `pool metadata size`) need no entry: the reader matches them to our names by itself.
pub const PARAM_ALIASES: &[(&str, &str, &str)] = &[
    // Salt's `pkg.installed` names (the original's adaptor renamed ours to them).
    ("linux.apt.package", "fromrepo", "repo"),
    ("linux.apt.package", "debconf", "deb-conf-file"),
    ("linux.apt.package", "verify_gpg", "verify-gpg"),
    ("linux.yum.package", "fromrepo", "repo"),
    ("linux.yum.package", "enablerepo", "repo"),
    ("linux.yum.package", "verify_gpg", "verify-gpg"),
    ("common.pip.package", "bin_env", "virtualenv"),
    ("common.timezone", "utc", "use-utc"),
    ("common.timezone", "use_utc", "use-utc"),
    ("common.virtualenv", "python", "python-bin"),
    ("common.virtualenv", "requirements", "requirements-file"),
    ("common.git", "rev", "revision"),
    ("common.git", "target", "path"),
    ("common.git", "identity", "ssh-key-file"),
    ("common.git", "force_checkout", "force"),
    ("common.hg", "rev", "revision"),
    ("common.hg", "target", "path"),
    ("common.svn", "rev", "revision"),
    ("common.svn", "target", "path"),
    ("common.archive", "source_hash", "checksum"),
    ("common.archive", "if_absent", "if-path-absent"),
    ("linux.mount", "dev", "device"),
    ("linux.mount", "fstype", "filesystem"),
    ("linux.mount", "pass_num", "pass"),
    ("linux.mount", "persist", "fstab"),
    ("linux.mkfs", "dev", "device"),
    ("linux.mkfs", "filesystem", "fstype"),
    ("linux.raid", "dev", "device-name"),
    ("linux.raid", "device", "device-name"),
    ("linux.lvm.pv", "dev", "path"),
    ("linux.lvm.pv", "device", "path"),
    ("linux.lvm.pv", "devices", "path"),
    ("linux.lvm.vg", "devices", "path"),
    ("linux.lvm.vg", "vgname", "name"),
    ("linux.lvm.lv", "vgname", "vg-name"),
    ("linux.lvm.lv", "size", "le-size"),
    ("linux.lvm.lv", "extents", "le-number"),
    ("linux.lvm.lv", "pv", "path"),
    ("linux.group", "system", "system-group"),
    ("linux.group", "name", "groupname"),
    ("linux.user", "system", "system-account"),
    ("linux.user", "name", "username"),
    ("linux.dir", "names", "path"),
    ("linux.dir", "recurse", "recursive"),
    ("linux.file", "contents", "content"),
    ("linux.apt.repo", "contents", "content"),
    ("linux.yum.repo", "contents", "content"),
    ("linux.apt.ppa", "ppa", "name"),
    ("linux.cmd", "runas", "user"),
    ("linux.cronjob", "daymonth", "day-of-month"),
    ("linux.cronjob", "dayweek", "day-of-week"),
    ("linux.supervisord", "names", "name"),
    ("linux.supervisord", "conf_file", "config"),
    ("linux.service", "names", "name"),
];

/// Parameters accepted for compatibility and ignored, with why: `(module, name, reason)`.
pub const IGNORED_PARAMS: &[(&str, &str, &str)] =
    &[("linux.symlink", "mode", "a symbolic link has no mode of its own on Linux (its target's mode is what counts)")];

/// Our name for parameter `name` of `module` when `name` is one of its aliases.
pub fn param_alias(module: &str, name: &str) -> Option<&'static str> {
    PARAM_ALIASES.iter().find(|(m, alias, _)| *m == module && *alias == name).map(|(_, _, ours)| *ours)
}

/// Why parameter `name` of `module` is accepted and ignored, if it is.
pub fn ignored_param(module: &str, name: &str) -> Option<&'static str> {
    IGNORED_PARAMS.iter().find(|(m, n, _)| *m == module && *n == name).map(|(_, _, why)| *why)
}

/// A parameter name as the reader compares spellings: lower case, with spaces and `_` as `-`.
pub fn normalize_param(name: &str) -> String {
    let lower = name.trim().to_lowercase();
    let parts: Vec<&str> = lower.split([' ', '_', '-', '\t']).filter(|p| !p.is_empty()).collect();
    parts.join("-")
}

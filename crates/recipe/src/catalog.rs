//! The module ids of the recipe language: every id of the original VisualOps table, so that a
//! recipe written for the original is recognised even where a module is not implemented yet.

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

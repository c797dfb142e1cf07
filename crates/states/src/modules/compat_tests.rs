//! The original's recipes through the modules: every alias of `catalog::PARAM_ALIASES` that a
//! module reads, module id aliases, and the original's value shapes, each accepted with a warning
//! (and refused by `compile_strict`).

use opsagent_recipe::{parse_str, Kind, Severity};

use super::Module;
use crate::{compile, compile_strict};

/// Compiles a one-state recipe; returns the module and the warnings' kinds.
fn one(yaml: &str) -> (Module, Vec<Kind>) {
    let recipe = parse_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {:?}", e.diagnostics));
    let (mut states, warnings) = compile(&recipe).unwrap_or_else(|d| panic!("{yaml}: {d:#?}"));
    assert!(warnings.iter().all(|w| w.severity == Severity::Warning));
    (states.remove(0).module, warnings.iter().map(|w| w.kind).collect())
}

fn state(module: &str, params: &str) -> String {
    format!("- {{id: s, module: {module}, parameter: {params}}}\n")
}

#[test]
fn aliases_reach_the_modules() {
    let (m, w) = one(&state("linux.mount", "{path: /mnt/x, dev: /dev/opsagent-test, fstype: ext4, persist: y}"));
    let Module::Mount(m) = m else { panic!() };
    assert_eq!((m.device.as_str(), m.filesystem.as_str(), m.fstab), ("/dev/opsagent-test", "ext4", true));
    assert_eq!(w, [Kind::Alias, Kind::Alias, Kind::Alias, Kind::OriginalShape]);

    let (m, w) = one(&state("linux.mkfs", "{dev: /dev/opsagent-test, fstype: ext4}"));
    let Module::Mkfs(m) = m else { panic!() };
    assert_eq!(m.device, std::path::PathBuf::from("/dev/opsagent-test"));
    assert_eq!(w, [Kind::Alias]);

    let (m, _) = one(&state("linux.raid", "{dev: /dev/md9, level: raid1, devices: [/dev/a, /dev/b]}"));
    let Module::Raid(m) = m else { panic!() };
    assert_eq!(m.device, std::path::PathBuf::from("/dev/md9"));

    let (m, w) = one(&state("linux.group", "{groupname: opsagent-test-g, system: 'yes'}"));
    let Module::Group(m) = m else { panic!() };
    assert!(m.system);
    assert_eq!(w, [Kind::Alias]);

    let (m, _) = one(&state("common.virtualenv", "{path: /opt/opsagent-test-venv, python: python3.11}"));
    let Module::Virtualenv(m) = m else { panic!() };
    assert_eq!(m.python_bin, "python3.11");

    let (m, w) = one(&state("common.timezone", "{name: UTC, use_utc: 'on'}"));
    let Module::Timezone(m) = m else { panic!() };
    assert!(m.use_utc);
    assert_eq!(w, [Kind::Alias, Kind::OriginalShape]);

    let (m, _) = one(&state("linux.apt.package", "{name: {opsagent-test-pkg: ''}, fromrepo: bookworm-backports}"));
    let Module::AptPackage(m) = m else { panic!() };
    assert_eq!(m.repo.as_deref(), Some("bookworm-backports"));

    let (m, w) = one(&state("linux.yum.package", "{name: {opsagent-test-pkg: ''}, fromrepo: epel, verify_gpg: n}"));
    let Module::YumPackage(m) = m else { panic!() };
    assert_eq!((m.repo.as_deref(), m.verify_gpg), (Some("epel"), false));
    assert_eq!(w, [Kind::Alias, Kind::Alias, Kind::OriginalShape]);

    let (m, _) = one(&state(
        "common.archive",
        "{source: /srv/opsagent-test.tar.gz, path: /opt/x, source_hash: 'md5=d41d8cd98f00b204e9800998ecf8427e'}",
    ));
    let Module::Archive(m) = m else { panic!() };
    assert_eq!(m.checksum.map(|c| c.to_string()).as_deref(), Some("md5:d41d8cd98f00b204e9800998ecf8427e"));

    let (m, _) = one(&state(
        "common.archive",
        "{source: /srv/opsagent-test.tar.gz, path: /opt/x, checksum: 'http://127.0.0.1:1/SHA256SUMS'}",
    ));
    let Module::Archive(m) = m else { panic!() };
    assert_eq!((m.checksum, m.checksum_url.as_deref()), (None, Some("http://127.0.0.1:1/SHA256SUMS")));
}

#[test]
fn lvm_under_older_ids_and_names() {
    let (m, w) = one("- {id: pv, module: linux lvm pv, parameter: {devices: [/dev/opsagent-test]}}\n");
    let Module::LvmPv(m) = m else { panic!() };
    assert_eq!(m.devices, [std::path::PathBuf::from("/dev/opsagent-test")]);
    assert_eq!(w, [Kind::Alias, Kind::Alias]);
    let (m, _) = one("- {id: vg, module: linux vg, parameter: {name: opsagent-test-vg, path: [/dev/opsagent-test]}}\n");
    assert!(matches!(m, Module::LvmVg(_)));
    let (m, _) = one("- {id: lv, module: linux.lv, parameter: {name: l, vgname: opsagent-test-vg, size: 1G}}\n");
    assert!(matches!(m, Module::LvmLv(_)));
}

#[test]
fn symlink_mode_is_ignored_with_a_warning() {
    let (m, w) = one(&state("linux.symlink", "{target: /tmp/opsagent-test-link, source: /tmp, mode: '0777'}"));
    assert!(matches!(m, Module::Symlink(_)));
    assert_eq!(w, [Kind::IgnoredKey]);
}

#[test]
fn service_names_as_a_plain_list() {
    let (m, w) = one(&state("linux.service", "{name: [nginx, php-fpm]}"));
    let Module::Service(m) = m else { panic!() };
    let names: Vec<&str> = m.services.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["nginx", "php-fpm"]);
    assert_eq!(w, [Kind::OriginalShape]);
    // And the reverse: `{key, value}` entries where a plain list is expected.
    let (m, w) = one(&state("linux.dir", "{path: [{key: /tmp/opsagent-test-a}, {key: /tmp/opsagent-test-b}]}"));
    assert!(matches!(m, Module::Dir(_)));
    assert_eq!(w, [Kind::OriginalShape]);
}

#[test]
fn unknown_parameters_warn_and_strict_refuses_them() {
    let yaml = state("linux.file", "{path: /tmp/opsagent-test, contnet: hi}");
    let (_, w) = one(&yaml);
    assert_eq!(w, [Kind::UnknownParameter]);
    let recipe = parse_str(&yaml).unwrap();
    let errors = compile_strict(&recipe).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].kind, errors[0].severity), (Kind::UnknownParameter, Severity::Error));
    assert_eq!(errors[0].hint.as_deref(), Some("did you mean `content`?"));
    // A recipe in our own shapes passes strict mode.
    let ours = parse_str(&state("linux.file", "{path: /tmp/opsagent-test, content: hi}")).unwrap();
    assert!(compile_strict(&ours).is_ok());
}

#[test]
fn repeated_and_missing_ids_reach_the_compiled_states() {
    let recipe =
        parse_str("- {module: meta.comment}\n- {id: a, module: meta.comment}\n- {id: a, module: meta.comment}\n")
            .unwrap();
    let (states, _) = compile(&recipe).unwrap();
    let ids: Vec<&str> = states.iter().map(|s| s.state.id.as_str()).collect();
    assert_eq!(ids, ["state-1", "a", "a#3"]);
    let errors = compile_strict(&recipe).unwrap_err();
    let kinds: Vec<Kind> = errors.iter().map(|d| d.kind).collect();
    assert_eq!(kinds, [Kind::MissingId, Kind::DuplicateId]);
}

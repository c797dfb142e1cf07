//! The modules, one file each, and [`Module`], the closed set that dispatches to them.

pub mod common_archive;
pub mod common_gem_package;
pub mod common_git;
pub mod common_hg;
pub mod common_npm_package;
pub mod common_pip_package;
pub mod common_svn;
pub mod common_timezone;
pub mod common_virtualenv;
pub mod linux_apt_package;
pub mod linux_apt_ppa;
pub mod linux_apt_repo;
pub mod linux_chef_client;
pub mod linux_chef_solo;
pub mod linux_cmd;
pub mod linux_cronjob;
pub mod linux_dir;
pub mod linux_docker_built;
pub mod linux_docker_deploy;
pub mod linux_docker_pulled;
pub mod linux_docker_pushed;
pub mod linux_docker_running;
pub mod linux_file;
pub mod linux_group;
pub mod linux_lvm_lv;
pub mod linux_lvm_pv;
pub mod linux_lvm_vg;
pub mod linux_mesos_master;
pub mod linux_mesos_slave;
pub mod linux_mkfs;
pub mod linux_mount;
pub mod linux_puppet_agent;
pub mod linux_puppet_apply;
pub mod linux_puppet_run;
pub mod linux_raid;
pub mod linux_rpm_key;
pub mod linux_service;
pub mod linux_supervisord;
pub mod linux_symlink;
pub mod linux_user;
pub mod linux_yum_package;
pub mod linux_yum_repo;
pub mod meta_comment;
pub mod meta_hold;
pub mod meta_wait;
mod packages;

#[cfg(test)]
mod compat_tests;

use std::time::Duration;

use opsagent_recipe::{catalog, Diagnostic, State};

use crate::{Ctx, Outcome, Plan, StateError};

/// The module ids this version implements.
pub const SUPPORTED: &[&str] = &[
    "meta.comment",
    "meta.wait",
    "meta.hold",
    "linux.file",
    "linux.dir",
    "linux.symlink",
    "linux.cmd",
    "linux.apt.package",
    "linux.apt.repo",
    "linux.apt.ppa",
    "linux.user",
    "linux.group",
    "linux.cronjob",
    "common.timezone",
    "linux.service",
    "common.git",
    "common.hg",
    "common.svn",
    "linux.supervisord",
    "linux.mount",
    "linux.mkfs",
    "linux.lvm.pv",
    "linux.lvm.vg",
    "linux.lvm.lv",
    "linux.raid",
    "common.pip.package",
    "common.archive",
    "common.virtualenv",
    "common.npm.package",
    "common.gem.package",
    "linux.puppet.apply",
    "linux.puppet.agent",
    "linux.puppet.run",
    "linux.yum.package",
    "linux.yum.repo",
    "linux.rpm.key",
    "linux.chef.client",
    "linux.chef.solo",
    "linux.mesos.master",
    "linux.mesos.slave",
    "linux.docker.pulled",
    "linux.docker.built",
    "linux.docker.running",
    "linux.docker.pushed",
    "linux.docker.deploy",
];

/// A validated state module. Each is boxed: a recipe of thousands of states holds each module at its
/// own size, not at the size of the largest.
#[derive(Debug, Clone)]
pub enum Module {
    Comment(Box<meta_comment::Comment>),
    Wait(Box<meta_wait::Wait>),
    Hold(Box<meta_hold::Hold>),
    File(Box<linux_file::File>),
    Dir(Box<linux_dir::Dir>),
    Symlink(Box<linux_symlink::Symlink>),
    Cmd(Box<linux_cmd::Cmd>),
    Service(Box<linux_service::Service>),
    Supervisord(Box<linux_supervisord::Supervisord>),
    Git(Box<common_git::Git>),
    Hg(Box<common_hg::Hg>),
    Svn(Box<common_svn::Svn>),
    Mount(Box<linux_mount::Mount>),
    Mkfs(Box<linux_mkfs::Mkfs>),
    LvmPv(Box<linux_lvm_pv::Pv>),
    LvmVg(Box<linux_lvm_vg::Vg>),
    LvmLv(Box<linux_lvm_lv::Lv>),
    Raid(Box<linux_raid::Raid>),
    PipPackage(Box<common_pip_package::PipPackage>),
    Archive(Box<common_archive::Archive>),
    Virtualenv(Box<common_virtualenv::Virtualenv>),
    NpmPackage(Box<common_npm_package::NpmPackage>),
    GemPackage(Box<common_gem_package::GemPackage>),
    AptPackage(Box<linux_apt_package::AptPackage>),
    AptRepo(Box<linux_apt_repo::AptRepo>),
    AptPpa(Box<linux_apt_ppa::AptPpa>),
    YumPackage(Box<linux_yum_package::YumPackage>),
    YumRepo(Box<linux_yum_repo::YumRepo>),
    RpmKey(Box<linux_rpm_key::RpmKey>),
    User(Box<linux_user::User>),
    Group(Box<linux_group::Group>),
    Cronjob(Box<linux_cronjob::Cronjob>),
    Timezone(Box<common_timezone::Timezone>),
    PuppetApply(Box<linux_puppet_apply::PuppetApply>),
    PuppetAgent(Box<linux_puppet_agent::PuppetAgent>),
    PuppetRun(Box<linux_puppet_run::PuppetRun>),
    ChefClient(Box<linux_chef_client::ChefClient>),
    ChefSolo(Box<linux_chef_solo::ChefSolo>),
    MesosMaster(Box<linux_mesos_master::MesosMaster>),
    MesosSlave(Box<linux_mesos_slave::MesosSlave>),
    DockerPulled(Box<linux_docker_pulled::Pulled>),
    DockerBuilt(Box<linux_docker_built::Built>),
    DockerRunning(Box<linux_docker_running::Running>),
    DockerPushed(Box<linux_docker_pushed::Pushed>),
    DockerDeploy(Box<linux_docker_deploy::Deploy>),
}

impl Module {
    /// Validates `state`'s parameters for its module; returns the module and any warnings.
    pub fn from_state(state: &State) -> Result<(Module, Vec<Diagnostic>), Vec<Diagnostic>> {
        match state.module.as_str() {
            "meta.comment" => meta_comment::Comment::from_params(state).map(|(m, w)| (Module::Comment(Box::new(m)), w)),
            "meta.wait" => meta_wait::Wait::from_params(state).map(|(m, w)| (Module::Wait(Box::new(m)), w)),
            "meta.hold" => meta_hold::Hold::from_params(state).map(|(m, w)| (Module::Hold(Box::new(m)), w)),
            "linux.file" => linux_file::File::from_params(state).map(|(m, w)| (Module::File(Box::new(m)), w)),
            "linux.dir" => linux_dir::Dir::from_params(state).map(|(m, w)| (Module::Dir(Box::new(m)), w)),
            "linux.symlink" => {
                linux_symlink::Symlink::from_params(state).map(|(m, w)| (Module::Symlink(Box::new(m)), w))
            }
            "linux.cmd" => linux_cmd::Cmd::from_params(state).map(|(m, w)| (Module::Cmd(Box::new(m)), w)),
            "linux.service" => {
                linux_service::Service::from_params(state).map(|(m, w)| (Module::Service(Box::new(m)), w))
            }
            "linux.supervisord" => {
                linux_supervisord::Supervisord::from_params(state).map(|(m, w)| (Module::Supervisord(Box::new(m)), w))
            }
            "common.git" => common_git::Git::from_params(state).map(|(m, w)| (Module::Git(Box::new(m)), w)),
            "common.hg" => common_hg::Hg::from_params(state).map(|(m, w)| (Module::Hg(Box::new(m)), w)),
            "common.svn" => common_svn::Svn::from_params(state).map(|(m, w)| (Module::Svn(Box::new(m)), w)),
            "linux.mount" => linux_mount::Mount::from_params(state).map(|(m, w)| (Module::Mount(Box::new(m)), w)),
            "linux.mkfs" => linux_mkfs::Mkfs::from_params(state).map(|(m, w)| (Module::Mkfs(Box::new(m)), w)),
            "linux.lvm.pv" => linux_lvm_pv::Pv::from_params(state).map(|(m, w)| (Module::LvmPv(Box::new(m)), w)),
            "linux.lvm.vg" => linux_lvm_vg::Vg::from_params(state).map(|(m, w)| (Module::LvmVg(Box::new(m)), w)),
            "linux.lvm.lv" => linux_lvm_lv::Lv::from_params(state).map(|(m, w)| (Module::LvmLv(Box::new(m)), w)),
            "linux.raid" => linux_raid::Raid::from_params(state).map(|(m, w)| (Module::Raid(Box::new(m)), w)),
            "common.pip.package" => {
                common_pip_package::PipPackage::from_params(state).map(|(m, w)| (Module::PipPackage(Box::new(m)), w))
            }
            "common.archive" => {
                common_archive::Archive::from_params(state).map(|(m, w)| (Module::Archive(Box::new(m)), w))
            }
            "common.virtualenv" => {
                common_virtualenv::Virtualenv::from_params(state).map(|(m, w)| (Module::Virtualenv(Box::new(m)), w))
            }
            "common.npm.package" => {
                common_npm_package::NpmPackage::from_params(state).map(|(m, w)| (Module::NpmPackage(Box::new(m)), w))
            }
            "common.gem.package" => {
                common_gem_package::GemPackage::from_params(state).map(|(m, w)| (Module::GemPackage(Box::new(m)), w))
            }
            "linux.apt.package" => {
                linux_apt_package::AptPackage::from_params(state).map(|(m, w)| (Module::AptPackage(Box::new(m)), w))
            }
            "linux.apt.repo" => {
                linux_apt_repo::AptRepo::from_params(state).map(|(m, w)| (Module::AptRepo(Box::new(m)), w))
            }
            "linux.apt.ppa" => linux_apt_ppa::AptPpa::from_params(state).map(|(m, w)| (Module::AptPpa(Box::new(m)), w)),
            "linux.yum.package" => {
                linux_yum_package::YumPackage::from_params(state).map(|(m, w)| (Module::YumPackage(Box::new(m)), w))
            }
            "linux.yum.repo" => {
                linux_yum_repo::YumRepo::from_params(state).map(|(m, w)| (Module::YumRepo(Box::new(m)), w))
            }
            "linux.rpm.key" => linux_rpm_key::RpmKey::from_params(state).map(|(m, w)| (Module::RpmKey(Box::new(m)), w)),
            "linux.user" => linux_user::User::from_params(state).map(|(m, w)| (Module::User(Box::new(m)), w)),
            "linux.group" => linux_group::Group::from_params(state).map(|(m, w)| (Module::Group(Box::new(m)), w)),
            "linux.cronjob" => {
                linux_cronjob::Cronjob::from_params(state).map(|(m, w)| (Module::Cronjob(Box::new(m)), w))
            }
            "common.timezone" => {
                common_timezone::Timezone::from_params(state).map(|(m, w)| (Module::Timezone(Box::new(m)), w))
            }
            "linux.puppet.apply" => {
                linux_puppet_apply::PuppetApply::from_params(state).map(|(m, w)| (Module::PuppetApply(Box::new(m)), w))
            }
            "linux.puppet.agent" => {
                linux_puppet_agent::PuppetAgent::from_params(state).map(|(m, w)| (Module::PuppetAgent(Box::new(m)), w))
            }
            "linux.puppet.run" => {
                linux_puppet_run::PuppetRun::from_params(state).map(|(m, w)| (Module::PuppetRun(Box::new(m)), w))
            }
            "linux.chef.client" => {
                linux_chef_client::ChefClient::from_params(state).map(|(m, w)| (Module::ChefClient(Box::new(m)), w))
            }
            "linux.chef.solo" => {
                linux_chef_solo::ChefSolo::from_params(state).map(|(m, w)| (Module::ChefSolo(Box::new(m)), w))
            }
            "linux.mesos.master" => {
                linux_mesos_master::MesosMaster::from_params(state).map(|(m, w)| (Module::MesosMaster(Box::new(m)), w))
            }
            "linux.mesos.slave" => {
                linux_mesos_slave::MesosSlave::from_params(state).map(|(m, w)| (Module::MesosSlave(Box::new(m)), w))
            }
            "linux.docker.pulled" => {
                linux_docker_pulled::Pulled::from_params(state).map(|(m, w)| (Module::DockerPulled(Box::new(m)), w))
            }
            "linux.docker.built" => {
                linux_docker_built::Built::from_params(state).map(|(m, w)| (Module::DockerBuilt(Box::new(m)), w))
            }
            "linux.docker.running" => {
                linux_docker_running::Running::from_params(state).map(|(m, w)| (Module::DockerRunning(Box::new(m)), w))
            }
            "linux.docker.pushed" => {
                linux_docker_pushed::Pushed::from_params(state).map(|(m, w)| (Module::DockerPushed(Box::new(m)), w))
            }
            "linux.docker.deploy" => {
                linux_docker_deploy::Deploy::from_params(state).map(|(m, w)| (Module::DockerDeploy(Box::new(m)), w))
            }
            id if catalog::is_known_module(id) => Err(vec![crate::not_yet_supported(state)]),
            // The recipe crate rejects unknown ids before we get here.
            id => Err(vec![Diagnostic::error(opsagent_recipe::Kind::UnknownModule, format!("unknown module `{id}`"))
                .state(state.state_ref())]),
        }
    }

    /// Compares the machine with the desired state. Never changes the machine.
    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        match self {
            Module::Comment(_) | Module::Wait(_) | Module::Hold(_) => Ok(Plan::default()),
            Module::File(m) => m.check(ctx).await,
            Module::Dir(m) => m.check(ctx),
            Module::Symlink(m) => m.check(ctx),
            Module::Cmd(m) => m.check(ctx),
            Module::Service(m) => m.check(ctx).await,
            Module::Supervisord(m) => m.check(ctx).await,
            Module::Git(m) => m.check(ctx).await,
            Module::Hg(m) => m.check(ctx).await,
            Module::Svn(m) => m.check(ctx).await,
            Module::Mount(m) => m.check(ctx).await,
            Module::Mkfs(m) => m.check(ctx).await,
            Module::LvmPv(m) => m.check(ctx).await,
            Module::LvmVg(m) => m.check(ctx).await,
            Module::LvmLv(m) => m.check(ctx).await,
            Module::Raid(m) => m.check(ctx).await,
            Module::PipPackage(m) => m.check(ctx).await,
            Module::Archive(m) => m.check(ctx).await,
            Module::Virtualenv(m) => m.check(ctx).await,
            Module::NpmPackage(m) => m.check(ctx).await,
            Module::GemPackage(m) => m.check(ctx).await,
            Module::AptPackage(m) => m.check(ctx).await,
            Module::AptRepo(m) => m.check(ctx),
            Module::AptPpa(m) => m.check(ctx),
            Module::YumPackage(m) => m.check(ctx).await,
            Module::YumRepo(m) => m.check(ctx).await,
            Module::RpmKey(m) => m.check(ctx).await,
            Module::User(m) => m.check(ctx),
            Module::Group(m) => m.check(ctx),
            Module::Cronjob(m) => m.check(ctx).await,
            Module::Timezone(m) => m.check(ctx),
            Module::PuppetApply(m) => m.check(ctx).await,
            Module::PuppetAgent(m) => m.check(ctx).await,
            Module::PuppetRun(m) => m.check(ctx).await,
            Module::ChefClient(m) => m.check(ctx).await,
            Module::ChefSolo(m) => m.check(ctx).await,
            Module::MesosMaster(m) => m.check(ctx).await,
            Module::MesosSlave(m) => m.check(ctx).await,
            Module::DockerPulled(m) => m.check(ctx).await,
            Module::DockerBuilt(m) => m.check(ctx).await,
            Module::DockerRunning(m) => m.check(ctx).await,
            Module::DockerPushed(m) => m.check(ctx).await,
            Module::DockerDeploy(m) => m.check(ctx).await,
        }
    }

    /// Carries out `plan` (from `check`).
    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        if ctx.cancel.is_cancelled() {
            return Err(StateError::Cancelled);
        }
        match self {
            Module::Comment(_) | Module::Wait(_) | Module::Hold(_) => Ok(Outcome::default()),
            Module::File(m) => m.apply(ctx, plan).await,
            Module::Dir(m) => m.apply(ctx, plan),
            Module::Symlink(m) => m.apply(ctx, plan),
            Module::Cmd(m) => m.apply(ctx, plan).await,
            Module::Service(m) => m.apply(ctx, plan).await,
            Module::Supervisord(m) => m.apply(ctx, plan).await,
            Module::Git(m) => m.apply(ctx, plan).await,
            Module::Hg(m) => m.apply(ctx, plan).await,
            Module::Svn(m) => m.apply(ctx, plan).await,
            Module::Mount(m) => m.apply(ctx, plan).await,
            Module::Mkfs(m) => m.apply(ctx, plan).await,
            Module::LvmPv(m) => m.apply(ctx, plan).await,
            Module::LvmVg(m) => m.apply(ctx, plan).await,
            Module::LvmLv(m) => m.apply(ctx, plan).await,
            Module::Raid(m) => m.apply(ctx, plan).await,
            Module::PipPackage(m) => m.apply(ctx, plan).await,
            Module::Archive(m) => m.apply(ctx, plan).await,
            Module::Virtualenv(m) => m.apply(ctx, plan).await,
            Module::NpmPackage(m) => m.apply(ctx, plan).await,
            Module::GemPackage(m) => m.apply(ctx, plan).await,
            Module::AptPackage(m) => m.apply(ctx, plan).await,
            Module::AptRepo(m) => m.apply(ctx, plan),
            Module::AptPpa(m) => m.apply(ctx, plan).await,
            Module::YumPackage(m) => m.apply(ctx, plan).await,
            Module::YumRepo(m) => m.apply(ctx, plan).await,
            Module::RpmKey(m) => m.apply(ctx, plan).await,
            Module::User(m) => m.apply(ctx, plan).await,
            Module::Group(m) => m.apply(ctx, plan).await,
            Module::Cronjob(m) => m.apply(ctx, plan).await,
            Module::Timezone(m) => m.apply(ctx, plan),
            Module::PuppetApply(m) => m.apply(ctx, plan).await,
            Module::PuppetAgent(m) => m.apply(ctx, plan).await,
            Module::PuppetRun(m) => m.apply(ctx, plan).await,
            Module::ChefClient(m) => m.apply(ctx, plan).await,
            Module::ChefSolo(m) => m.apply(ctx, plan).await,
            Module::MesosMaster(m) => m.apply(ctx, plan).await,
            Module::MesosSlave(m) => m.apply(ctx, plan).await,
            Module::DockerPulled(m) => m.apply(ctx, plan).await,
            Module::DockerBuilt(m) => m.apply(ctx, plan).await,
            Module::DockerRunning(m) => m.apply(ctx, plan).await,
            Module::DockerPushed(m) => m.apply(ctx, plan).await,
            Module::DockerDeploy(m) => m.apply(ctx, plan).await,
        }
    }

    /// The module's own default timeout, if it has one.
    pub fn own_timeout(&self) -> Option<Duration> {
        match self {
            Module::Cmd(m) => Some(m.timeout),
            Module::Wait(m) => m.timeout,
            _ => None,
        }
    }
}

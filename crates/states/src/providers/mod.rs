//! Providers: the system tools behind the modules (package managers, init systems), each in its
//! own file, so that a module reads as "what is wanted" and the provider as "how this system does it".

pub mod apt;
pub mod chef;
pub mod docker;
pub mod gem;
pub mod lvm;
pub mod mesos;
pub mod npm;
pub mod packages;
pub mod pip;
pub mod puppet;
pub mod service;
pub mod wrapped;
pub mod yum;

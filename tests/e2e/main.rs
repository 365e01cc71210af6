//! The end-to-end tests: the built `ddsky` against the real Docker daemon, the stand-in images, a
//! registry and moto on loopback. One test binary, so the test images are built once per run and the
//! shared harness in `common` is used by every module.

mod common;
mod fake_datadog;

mod aws_secrets;
mod burst;
mod dashboard;
mod doctor;
mod drain;
mod k8s;
mod lifecycle;
mod rehearsal;
mod reliability;
mod robustness;
mod run;
mod skypilot;
mod skypilot_loader;
mod standin;
mod startup;
mod tls;
mod verify;
mod vm_mode;
mod wheel;
mod words;

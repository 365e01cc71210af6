//! /proc files: the socket tables (/proc/net/{tcp,tcp6,udp,udp6}), fd links, /proc/*/cgroup and
//! mountinfo (where ddsky finds its own container).
#![no_main]
use ddsky_fuzz::placement::{
    container_evidence, detect, id_from_cgroup, own_container_id, Surroundings,
};
use ddsky_fuzz::ports::{on_port, parse_table, socket_inode, Proto};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let f = ddsky_fuzz::fields(data, 4);
    for proto in [Proto::Tcp, Proto::Udp] {
        let sockets = parse_table(&f[0], proto);
        let _ = on_port(&sockets, 5001);
    }
    let _ = socket_inode(&f[0]);
    if let Some(id) = id_from_cgroup(&f[1]) {
        ddsky_fuzz::assert_container_id(&id);
    }
    let s = Surroundings {
        dockerenv: data.first().is_some_and(|b| b & 1 == 1),
        containerenv: data.first().is_some_and(|b| b & 2 == 2),
        pid1_cgroup: f[1].clone(),
        self_cgroup: f[2].clone(),
        mountinfo: f[3].clone(),
        hostname: f[2].lines().next().unwrap_or_default().to_owned(),
        kubernetes: data.first().is_some_and(|b| b & 4 == 4),
    };
    let _ = detect(&s);
    let _ = container_evidence(&s);
    if let Some(id) = own_container_id(&s) {
        ddsky_fuzz::assert_container_id(&id);
    }
});

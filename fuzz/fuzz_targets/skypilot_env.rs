//! SkyPilot's environment: SKYPILOT_CLUSTER_INFO (JSON), the node IP lists, ranks and counts.
#![no_main]
use ddsky_fuzz::tags::{build, cluster_tags, JobIdentity, TagRequest};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 8] = [
    "SKYPILOT_CLUSTER_INFO",
    "SKYPILOT_NODE_IPS",
    "SKYPILOT_SETUP_NODE_IPS",
    "SKYPILOT_NODE_RANK",
    "SKYPILOT_SETUP_NODE_RANK",
    "SKYPILOT_NUM_NODES",
    "SKYPILOT_TASK_ID",
    "METTA_RUN_ID",
];

fuzz_target!(|data: &[u8]| {
    let f = ddsky_fuzz::fields(data, NAMES.len());
    let var = |name: &str| {
        let i = NAMES.iter().position(|n| *n == name)?;
        (!f[i].is_empty()).then(|| f[i].clone())
    };
    let mut warnings = Vec::new();
    let mut identity = JobIdentity::from_env(var, &mut warnings);
    if let Ok(cluster) = cluster_tags(&f[0]) {
        identity.cluster = cluster;
    }
    for n in [&identity.node_rank, &identity.num_nodes]
        .into_iter()
        .flatten()
    {
        assert!(
            n.parse::<u32>().is_ok() || n.parse::<usize>().is_ok(),
            "not a number: {n:?}"
        );
    }
    let request = TagRequest {
        env: "prod".into(),
        service: "train".into(),
        extra: Vec::new(),
    };
    let _ = build(&request, &identity);
});

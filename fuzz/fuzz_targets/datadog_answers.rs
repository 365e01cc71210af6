//! Datadog's API answers (`ddsky verify`): the hosts list, a metrics query, a logs aggregate, an
//! error body, the rate-limit header.
#![no_main]
use ddsky_fuzz::datadog_api::{
    error_detail, parse_json, throttle_wait, Endpoint, HostListResponse, LogsAggregateResponse,
    MetricsQueryResponse,
};
use ddsky_fuzz::verify::{last_point_ms, logs_counts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(hosts) = parse_json::<HostListResponse>(Endpoint::Hosts, data) {
        let _ = hosts.host_list.len();
    }
    if let Ok(query) = parse_json::<MetricsQueryResponse>(Endpoint::Query, data) {
        for series in &query.series {
            let _ = last_point_ms(series);
        }
    }
    if let Ok(logs) = parse_json::<LogsAggregateResponse>(Endpoint::LogsAggregate, data) {
        let _ = logs_counts(&logs);
    }
    assert!(error_detail(data).chars().count() <= 200);
    let header = String::from_utf8_lossy(data);
    let _ = throttle_wait(Some(&header));
});

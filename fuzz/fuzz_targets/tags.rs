//! Tags from flags and DDSKY_TAGS/DDSKY_ENV/DDSKY_SERVICE, normalised by Datadog's rules.
#![no_main]
use ddsky_fuzz::tags::{build, check_extra, normalize, JobIdentity, TagRequest, MAX_TAG_LEN};
use libfuzzer_sys::fuzz_target;

fn assert_datadog_tag(tag: &str) {
    assert!(tag.chars().count() <= MAX_TAG_LEN, "too long: {tag:?}");
    assert!(
        tag.starts_with(char::is_alphabetic),
        "must start with a letter: {tag:?}"
    );
    assert!(!tag.ends_with(':'), "ends with a colon: {tag:?}");
}

fuzz_target!(|data: &[u8]| {
    let f = ddsky_fuzz::fields(data, 4);
    if let Some(tag) = normalize(&f[0]).tag {
        assert_datadog_tag(&tag);
        // Normalising again changes nothing.
        assert_eq!(normalize(&tag).tag.as_deref(), Some(tag.as_str()));
    }
    let _ = check_extra(&f[0]);
    let request = TagRequest {
        env: f[1].clone(),
        service: f[2].clone(),
        extra: f[3].split_whitespace().map(str::to_owned).collect(),
    };
    if let Ok(set) = build(&request, &JobIdentity::default()) {
        set.tags.iter().for_each(|t| assert_datadog_tag(t));
        let _ = set.value_of("env");
    }
});

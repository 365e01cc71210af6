//! Image references and names from flags and the environment (--image/DDSKY_IMAGE lists, the
//! container name) and Docker's pull errors.
#![no_main]
use ddsky_fuzz::reference::{
    full_container_id, image_repository, short_id, validate_container_name,
    validate_image_reference,
};
use ddsky_fuzz::registry::{classify, registry_of, ImageList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if validate_image_reference(&text).is_ok() {
        let _ = image_repository(&text);
        let _ = registry_of(&text);
    }
    if let Ok(list) = ImageList::parse(&text) {
        assert!(!list.entries().is_empty());
        let _ = list.first();
        let _ = list.identity();
        for entry in list.entries() {
            assert!(
                validate_image_reference(entry).is_ok(),
                "list took {entry:?}"
            );
        }
    }
    let _ = validate_container_name(&text);
    if let Some(id) = full_container_id(&text) {
        ddsky_fuzz::assert_container_id(&id);
    }
    let _ = short_id(&text);
    let _ = classify(&text).describe();
});

//! The auditor's registry: `<run_path>/registry.json`, as pkg/logs/auditor writes it (version 2):
//! `{"Version":2,"Registry":{"file:<path>":{"LastUpdated":"<RFC3339>","Offset":"<decimal>",
//! "TailingMode":"beginning","IngestionTimestamp":<ns>}}}`. Offsets advance only when the intake
//! acknowledged a payload (2xx, or a permanent 400/401/403/413 drop): they mean SENT, not read.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "registry.json";
/// The mode a container file tailer runs in (the file launcher forces `beginning` for sources
/// that carry an identifier, i.e. every container source).
pub const TAILING_MODE: &str = "beginning";

/// The registry key of a tailed file.
pub fn identifier(path: &Path) -> String {
    format!("file:{}", path.display())
}

pub fn registry_file(run_path: &Path) -> PathBuf {
    run_path.join(FILE_NAME)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub offset: u64,
    /// Unix nanoseconds of the last update.
    pub last_updated_ns: i64,
    pub tailing_mode: String,
    /// Unix nanoseconds of the last acknowledged message's ingestion.
    pub ingestion_ns: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    pub entries: BTreeMap<String, Entry>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(rename = "Version")]
    version: u32,
    #[serde(rename = "Registry")]
    registry: BTreeMap<String, WireEntry>,
}

#[derive(Serialize, Deserialize)]
struct WireEntry {
    #[serde(rename = "LastUpdated")]
    last_updated: String,
    #[serde(rename = "Offset")]
    offset: String,
    #[serde(rename = "TailingMode")]
    tailing_mode: String,
    #[serde(rename = "IngestionTimestamp")]
    ingestion_timestamp: i64,
}

impl Registry {
    /// The offset to resume `id` from, if the registry has one.
    pub fn offset(&self, id: &str) -> Option<u64> {
        self.entries.get(id).map(|e| e.offset)
    }

    /// Records that everything up to `offset` in `id` was sent, by a source whose configured
    /// position is `tailing_mode`. As the auditor does, the entry is replaced: payloads of one
    /// file come in file order, and a truncated file's new tailer starts again from 0.
    pub fn acknowledge(
        &mut self,
        id: &str,
        offset: u64,
        now_ns: i64,
        ingestion_ns: i64,
        tailing_mode: &str,
    ) {
        self.entries.insert(
            id.to_string(),
            Entry {
                offset,
                last_updated_ns: now_ns,
                tailing_mode: tailing_mode.to_string(),
                ingestion_ns,
            },
        );
    }

    /// The offset and recorded `TailingMode` of `id`, if the registry has it.
    pub fn position(&self, id: &str) -> Option<(u64, &str)> {
        self.entries
            .get(id)
            .map(|e| (e.offset, e.tailing_mode.as_str()))
    }

    pub fn to_json(&self) -> String {
        let wire = Wire {
            version: 2,
            registry: self
                .entries
                .iter()
                .map(|(k, e)| {
                    (
                        k.clone(),
                        WireEntry {
                            last_updated: rfc3339_nano(e.last_updated_ns),
                            offset: e.offset.to_string(),
                            tailing_mode: e.tailing_mode.clone(),
                            ingestion_timestamp: e.ingestion_ns,
                        },
                    )
                })
                .collect(),
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Reads a registry; entries whose offset is not a number are skipped.
    pub fn parse(text: &str) -> Result<Registry, String> {
        let wire: Wire = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if wire.version != 2 {
            return Err(format!("unsupported registry version {}", wire.version));
        }
        let entries = wire
            .registry
            .into_iter()
            .filter_map(|(k, e)| {
                let offset = e.offset.parse().ok()?;
                Some((
                    k,
                    Entry {
                        offset,
                        last_updated_ns: 0,
                        tailing_mode: e.tailing_mode,
                        ingestion_ns: e.ingestion_timestamp,
                    },
                ))
            })
            .collect();
        Ok(Registry { entries })
    }
}

/// Go's `time.RFC3339Nano` in UTC: fractional seconds without trailing zeros.
pub fn rfc3339_nano(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let base = crate::timefmt::rfc3339(secs as f64);
    if frac == 0 {
        return base;
    }
    let digits = format!("{frac:09}");
    let digits = digits.trim_end_matches('0');
    format!("{}.{digits}Z", base.trim_end_matches('Z'))
}

/// Writes the registry atomically (temporary file + rename), creating the directory.
pub fn store(run_path: &Path, registry: &Registry) -> std::io::Result<()> {
    std::fs::create_dir_all(run_path)?;
    crate::state::write_atomic(&registry_file(run_path), registry.to_json().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_exactly_like_the_auditor() {
        let mut r = Registry::default();
        let id = identifier(Path::new("/var/lib/docker/containers/abc/abc-json.log"));
        assert_eq!(id, "file:/var/lib/docker/containers/abc/abc-json.log");
        r.acknowledge(
            &id,
            1234,
            1_700_000_000_500_000_000,
            1_700_000_000_000_000_001,
            TAILING_MODE,
        );
        assert_eq!(
            r.to_json(),
            "{\"Version\":2,\"Registry\":{\"file:/var/lib/docker/containers/abc/abc-json.log\":\
             {\"LastUpdated\":\"2023-11-14T22:13:20.5Z\",\"Offset\":\"1234\",\
             \"TailingMode\":\"beginning\",\"IngestionTimestamp\":1700000000000000001}}}"
        );
        let back = Registry::parse(&r.to_json()).unwrap();
        assert_eq!(back.offset(&id), Some(1234));
        assert_eq!(
            rfc3339_nano(1_700_000_000_000_000_000),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn the_last_acknowledgement_wins_and_bad_files_are_refused() {
        let mut r = Registry::default();
        r.acknowledge("file:a", 10, 1, 1, "beginning");
        assert_eq!(r.position("file:a"), Some((10, "beginning")));
        // A truncated file is read again from 0 by a new tailer: its offsets replace the old.
        r.acknowledge("file:a", 5, 2, 2, "");
        assert_eq!(r.offset("file:a"), Some(5));
        assert_eq!(r.position("file:a"), Some((5, "")));
        assert_eq!(r.offset("file:b"), None);
        assert!(Registry::parse("{}").is_err());
        assert!(Registry::parse("{\"Version\":1,\"Registry\":{}}").is_err());
        let r = Registry::parse(
            "{\"Version\":2,\"Registry\":{\"file:x\":{\"LastUpdated\":\"\",\"Offset\":\"x\",\"TailingMode\":\"end\",\"IngestionTimestamp\":0}}}",
        )
        .unwrap();
        assert!(r.entries.is_empty());
    }
}

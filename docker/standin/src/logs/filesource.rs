//! File log sources as the real agent configures and selects them (7.6x-7.7x; see
//! /work/shared/datadog-agent.md, "File log sources"). Pure rules over plain data, plus the
//! directory reads that stand for them (conf.d, Go's `filepath.Glob`), unit-tested here:
//! * the image's s6 script copies `/conf.d/**.yaml` into /etc/datadog-agent/conf.d (relative path
//!   kept) at every container start, before the agent ([`copy_custom_files`]);
//! * the agent reads conf.d ONCE, at its start: `<name>.yaml|yml` and `<name>.d/*.yaml|yml`, one
//!   level ([`read_confd`]); any of them with a `logs:` list configures sources named `<name>`
//!   ([`parse_logs_config`]), each validated as integration_config.go's `Validate` does;
//! * file selection (provider/file_provider.go): a path that exists is tailed as is; else a
//!   wildcard path is globbed (Go's `filepath.Glob`: `**` is not recursive), minus
//!   `exclude_paths`, newest names first, at most `open_files_limit` files in all
//!   ([`collect_files`], [`reverse_lexicographic`]);
//! * where a tailer starts (launcher.go's `handleTailingModeChange`, position.go's `Position`):
//!   [`start_at`].

use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};

/// Where the image's s6 script copies user files from, and to.
pub const CUSTOM_CONFD: &str = "/conf.d";
pub const ETC_DIR: &str = "/etc/datadog-agent";
/// `confd_path`'s default (DD_CONFD_PATH).
pub const DEFAULT_CONFD: &str = "/etc/datadog-agent/conf.d";
/// `logs_config.open_files_limit` on Linux.
pub const OPEN_FILES_LIMIT: usize = 500;

/// A source's `start_position` (`TailingMode`); unset is [`StartPosition::End`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartPosition {
    ForceBeginning,
    ForceEnd,
    Beginning,
    End,
}

impl StartPosition {
    /// `TailingModeFromString`: the four spellings, exactly; anything else is not one.
    pub fn parse(s: &str) -> Option<StartPosition> {
        match s {
            "forceBeginning" => Some(StartPosition::ForceBeginning),
            "forceEnd" => Some(StartPosition::ForceEnd),
            "beginning" => Some(StartPosition::Beginning),
            "end" => Some(StartPosition::End),
            _ => None,
        }
    }

    /// The mode a registry entry's `TailingMode` stands for: unknown or empty is `End`.
    pub fn from_registry(s: &str) -> StartPosition {
        StartPosition::parse(s).unwrap_or(StartPosition::End)
    }
}

/// One `type: file` entry of a conf.d file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSource {
    /// The config's name (`<name>.yaml`, `<name>.d/...`): the integration in `agent status`.
    pub name: String,
    pub path: String,
    pub service: Option<String>,
    pub source: Option<String>,
    pub sourcecategory: Option<String>,
    pub tags: Vec<String>,
    pub exclude_paths: Vec<String>,
    /// `start_position` as written ("" when unset): the registry's `TailingMode`.
    pub tailing_mode: String,
    /// Why the agent refused it (`Validate`); a refused source reads nothing.
    pub error: Option<String>,
}

impl FileSource {
    pub fn is_wildcard(&self) -> bool {
        contains_wildcard(&self.path)
    }

    /// The configured position; unset is `End` (only container sources default to beginning).
    pub fn start_position(&self) -> StartPosition {
        StartPosition::from_registry(&self.tailing_mode)
    }
}

/// `ContainsWildcard`.
pub fn contains_wildcard(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// `Validate` for a file source.
pub fn validate(path: &str, tailing_mode: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("file source must have a path".into());
    }
    let mode = StartPosition::parse(tailing_mode);
    if mode.is_none() && !tailing_mode.is_empty() {
        return Err(format!("invalid tailing mode '{tailing_mode}' for {path}"));
    }
    let mode = mode.unwrap_or(StartPosition::End);
    if contains_wildcard(path)
        && matches!(
            mode,
            StartPosition::Beginning | StartPosition::ForceBeginning
        )
    {
        return Err(format!(
            "tailing from the beginning is not supported for wildcard path {path}"
        ));
    }
    Ok(())
}

/// What one conf.d file declares: file sources (valid or refused), and warnings for what the
/// stand-in or the agent could not use.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub sources: Vec<FileSource>,
    pub warnings: Vec<String>,
}

/// A conf.d file's `logs:` list. `name` is the config's name, `file` where it was read (for
/// the warnings).
pub fn parse_logs_config(name: &str, file: &str, text: &str) -> Parsed {
    let mut out = Parsed::default();
    let doc: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.warnings
                .push(format!("Error reading config file {file}: {e}"));
            return out;
        }
    };
    let Some(logs) = doc.get("logs") else {
        return out;
    };
    let Some(entries) = logs.as_sequence() else {
        out.warnings.push(format!(
            "Error reading config file {file}: logs: must be a list of log sources"
        ));
        return out;
    };
    for entry in entries {
        let text_field = |k: &str| -> Result<Option<String>, String> {
            match entry.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(Value::Bool(b)) => Ok(Some(b.to_string())),
                Some(_) => Err(format!("cannot unmarshal {k} into a string")),
            }
        };
        let list_field = |k: &str| -> Result<Vec<String>, String> {
            match entry.get(k) {
                None | Some(Value::Null) => Ok(Vec::new()),
                // StringSliceField: newlines removed, split on commas, spaces kept.
                Some(Value::String(s)) => {
                    Ok(s.replace('\n', "").split(',').map(String::from).collect())
                }
                Some(Value::Sequence(items)) => items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(format!("cannot unmarshal {other:?} into a string")),
                    })
                    .collect(),
                Some(_) => Err(format!("cannot unmarshal {k} into a list of strings")),
            }
        };
        let fields = (|| {
            Ok::<_, String>((
                text_field("type")?.unwrap_or_default(),
                text_field("path")?.unwrap_or_default(),
                text_field("service")?,
                text_field("source")?,
                text_field("sourcecategory")?,
                list_field("tags")?,
                list_field("exclude_paths")?,
                text_field("start_position")?.unwrap_or_default(),
            ))
        })();
        let (kind, path, service, source, sourcecategory, tags, exclude_paths, tailing_mode) =
            match fields {
                Ok(f) => f,
                Err(e) => {
                    out.warnings
                        .push(format!("Error reading config file {file}: {e}"));
                    return Parsed {
                        sources: Vec::new(),
                        warnings: out.warnings,
                    };
                }
            };
        match kind.as_str() {
            "file" => {}
            "" => {
                out.warnings
                    .push("Invalid logs configuration: a config must have a type".into());
                continue;
            }
            other => {
                out.warnings.push(format!(
                    "the stand-in collects only `type: file` log sources: {other} source of {file} ignored"
                ));
                continue;
            }
        }
        let error = validate(&path, &tailing_mode).err();
        if let Some(e) = &error {
            out.warnings
                .push(format!("Invalid logs configuration: {e}"));
        }
        out.sources.push(FileSource {
            name: name.to_string(),
            path,
            service,
            source,
            sourcecategory,
            tags,
            exclude_paths,
            tailing_mode,
            error,
        });
    }
    out
}

fn is_yaml(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

fn sorted_entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut entries: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

/// The config files of conf.d as the file config provider finds them: `<name>.yaml|yml` at the
/// top, and `<name>.d/*.yaml|yml` one level down; `(name, path)` in directory order.
pub fn read_confd(confd: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for (entry, path) in sorted_entries(confd) {
        if path.is_dir() {
            let Some(name) = entry.strip_suffix(".d") else {
                continue;
            };
            for (inner, file) in sorted_entries(&path) {
                if is_yaml(&inner) && file.is_file() {
                    out.push((name.to_string(), file));
                }
            }
        } else if is_yaml(&entry) && path.is_file() {
            let name = entry
                .trim_end_matches(".yaml")
                .trim_end_matches(".yml")
                .to_string();
            out.push((name, path));
        }
    }
    out
}

/// Dockerfiles/agent/cont-init.d/89-copy-customfiles.sh: `find -L /conf.d -name '*.yaml' -exec
/// cp --parents -fv {} /etc/datadog-agent/ \;`. `.yaml` only (not `.yml`), any depth, symlinks
/// followed, the path under `from`'s parent kept. Returns the files copied.
pub fn copy_custom_files(from: &Path, to_etc: &Path) -> Vec<PathBuf> {
    let mut copied = Vec::new();
    let Some(parent) = from.parent() else {
        return copied;
    };
    let mut stack = vec![from.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for (name, path) in sorted_entries(&dir) {
            // `find -L` stats through symlinks.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if name.ends_with(".yaml") {
                let Ok(rel) = path.strip_prefix(parent) else {
                    continue;
                };
                let dest = to_etc.join(rel);
                let done = dest
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|_| std::fs::copy(&path, &dest));
                if done.is_ok() {
                    copied.push(dest);
                }
            }
        }
    }
    copied
}

/// Go's `filepath.ErrBadPattern`: a malformed pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadPattern;

/// Go's `filepath.Match` for one path element (no `/` in `name`): `*`, `?`, `[...]` with `^`
/// negation and ranges, `\` escapes. A malformed pattern is an error.
pub fn match_element(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> Result<bool, BadPattern> {
    let Some(&c) = p.first() else {
        return Ok(n.is_empty());
    };
    match c {
        '*' => {
            // Go checks the rest of the pattern is well formed even when matching fails.
            for skip in 0..=n.len() {
                if match_from(&p[1..], &n[skip..])? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        '?' => match n.first() {
            Some(_) => match_from(&p[1..], &n[1..]),
            None => Ok(false),
        },
        '[' => {
            let (matched, rest) = class(&p[1..], n.first().copied())?;
            if matched {
                match_from(rest, &n[1..])
            } else {
                Ok(false)
            }
        }
        '\\' => {
            let Some(&lit) = p.get(1) else {
                return Err(BadPattern);
            };
            if n.first() == Some(&lit) {
                match_from(&p[2..], &n[1..])
            } else {
                Ok(false)
            }
        }
        lit => {
            if n.first() == Some(&lit) {
                match_from(&p[1..], &n[1..])
            } else {
                Ok(false)
            }
        }
    }
}

/// A `[...]` class after its `[`: whether `c` is in it, and the pattern after its `]`.
fn class(p: &[char], c: Option<char>) -> Result<(bool, &[char]), BadPattern> {
    let mut i = 0;
    let negated = p.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let Some(&ch) = p.get(i) else {
            return Err(BadPattern);
        };
        if ch == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = read_class_char(p, &mut i)?;
        let hi = if p.get(i) == Some(&'-') {
            i += 1;
            read_class_char(p, &mut i)?
        } else {
            lo
        };
        if let Some(c) = c {
            if lo <= c && c <= hi {
                matched = true;
            }
        }
    }
    let Some(_) = c else {
        return Ok((false, &p[i..]));
    };
    Ok((matched != negated, &p[i..]))
}

fn read_class_char(p: &[char], i: &mut usize) -> Result<char, BadPattern> {
    let ch = *p.get(*i).ok_or(BadPattern)?;
    if ch == '-' || ch == ']' {
        return Err(BadPattern);
    }
    if ch == '\\' {
        let lit = *p.get(*i + 1).ok_or(BadPattern)?;
        *i += 2;
        return Ok(lit);
    }
    *i += 1;
    Ok(ch)
}

/// Go's `filepath.Glob`: the paths matching `pattern`, each directory's names in sorted order;
/// `**` is a plain `*` (one element). A pattern without meta characters returns itself when it
/// exists. I/O errors (unreadable directories) are ignored, as Go ignores them.
pub fn glob(pattern: &str) -> Result<Vec<String>, BadPattern> {
    if !contains_wildcard(pattern) {
        return Ok(if std::fs::symlink_metadata(pattern).is_ok() {
            vec![pattern.to_string()]
        } else {
            Vec::new()
        });
    }
    let (dir, file) = match pattern.rfind('/') {
        Some(0) => ("/".to_string(), &pattern[1..]),
        Some(i) => (pattern[..i].to_string(), &pattern[i + 1..]),
        None => (".".to_string(), pattern),
    };
    // Go validates the last element's pattern before anything else.
    match_element(file, "")?;
    let dirs = if contains_wildcard(&dir) {
        glob(&dir)?
    } else {
        vec![dir]
    };
    let mut out = Vec::new();
    for d in dirs {
        if !Path::new(&d).is_dir() {
            continue;
        }
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for name in names {
            if match_element(file, &name)? {
                let joined = if d == "/" {
                    format!("/{name}")
                } else if pattern.rfind('/').is_none() {
                    name.clone()
                } else {
                    format!("{d}/{name}")
                };
                out.push(joined);
            }
        }
    }
    Ok(out)
}

fn base_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// `filepath.Base` and `filepath.Dir` as the tailer's `filename:`/`dirname:` tags use them.
pub fn base_and_dir(path: &str) -> (String, String) {
    let base = base_name(path).to_string();
    let dir = match path.trim_end_matches('/').rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => path[..i].to_string(),
        None => ".".to_string(),
    };
    (base, dir)
}

/// `applyReverseLexicographicalOrdering` (the default `by_name` wildcard mode): reverse the
/// glob's order, then a stable sort by descending base name: newest-looking names first.
pub fn reverse_lexicographic(mut paths: Vec<String>) -> Vec<String> {
    paths.reverse();
    paths.sort_by(|a, b| base_name(b).cmp(base_name(a)));
    paths
}

/// `CollectFiles`: the files a source stands for now, or why none.
pub fn collect_files(source: &FileSource) -> Result<Vec<String>, String> {
    match std::fs::metadata(&source.path) {
        Ok(_) => return Ok(vec![source.path.clone()]),
        Err(e) if !source.is_wildcard() => {
            return Err(format!(
                "cannot read file {}: stat {}: {}",
                source.path,
                source.path,
                go_error(&e)
            ))
        }
        Err(_) => {}
    }
    let paths = glob(&source.path).map_err(|_| {
        format!(
            "malformed pattern, could not find any file: {}",
            source.path
        )
    })?;
    if paths.is_empty() {
        return Err(format!(
            "could not find any file matching pattern {}, check that all its subdirectories are executable",
            source.path
        ));
    }
    let mut excluded = std::collections::HashSet::new();
    for pattern in &source.exclude_paths {
        let matched = glob(pattern).map_err(|_| {
            format!("malformed exclusion pattern: {pattern}, syntax error in pattern")
        })?;
        excluded.extend(matched);
    }
    let kept: Vec<String> = paths
        .into_iter()
        .filter(|p| !excluded.contains(p))
        .collect();
    Ok(reverse_lexicographic(kept))
}

/// Go's wording of the usual stat errors.
pub fn go_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Where a new tailer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// This byte offset from the beginning.
    At(u64),
    /// The file's end when it is opened.
    End,
}

/// `handleTailingModeChange` then `Position`: `requested` is the source's position for the
/// files found when the source is added, `Beginning` for those the scan finds later;
/// `registry` is the file's entry (offset, TailingMode), if any. Forced modes ignore the
/// registry; an entry whose recorded mode was `beginning` (or forceBeginning) while `end` is
/// requested now is ignored too (beginning -> end: tail from the end); otherwise an offset wins.
pub fn start_at(requested: StartPosition, registry: Option<(u64, &str)>) -> Start {
    let mode = match requested {
        StartPosition::ForceBeginning | StartPosition::ForceEnd => requested,
        _ => {
            let previous = StartPosition::from_registry(registry.map_or("", |(_, m)| m));
            if previous != requested && requested != StartPosition::Beginning {
                StartPosition::ForceEnd
            } else {
                requested
            }
        }
    };
    match (mode, registry) {
        (StartPosition::ForceBeginning, _) => Start::At(0),
        (StartPosition::ForceEnd, _) => Start::End,
        (_, Some((offset, _))) => Start::At(offset),
        (StartPosition::Beginning, None) => Start::At(0),
        (_, None) => Start::End,
    }
}

/// `DidRotate`: the path now names another file (new inode) or a file shorter than what was
/// read (truncated).
pub fn did_rotate(opened: (u64, u64), now: (u64, u64), now_size: u64, read_offset: u64) -> bool {
    opened != now || now_size < read_offset
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(path: &str, mode: &str) -> FileSource {
        FileSource {
            name: "t".into(),
            path: path.into(),
            service: None,
            source: None,
            sourcecategory: None,
            tags: vec![],
            exclude_paths: vec![],
            tailing_mode: mode.into(),
            error: None,
        }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("standin-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_logs_list_is_enough_and_each_entry_is_validated_as_the_agent_does() {
        let yaml = r#"
logs:
  - type: file
    path: /var/log/job/run.log
    service: skypilot-worker
    source: python
    sourcecategory: training
    tags: ["metta_run_id:r1", "skypilot_node_rank:0"]
  - type: file
    path: /var/log/job/*.log
    tags: "a:b, c:d"
    exclude_paths: ["/var/log/job/old*.log"]
    start_position: forceEnd
  - type: file
    service: nopath
  - type: file
    path: /var/log/x.log
    start_position: Beginning
  - type: file
    path: /var/log/job/*.log
    start_position: beginning
  - type: file
    path: /var/log/job/?.log
    start_position: forceBeginning
  - type: tcp
    port: 10514
"#;
        let p = parse_logs_config("ddsky", "/etc/datadog-agent/conf.d/ddsky.d/conf.yaml", yaml);
        assert_eq!(p.sources.len(), 6);
        let a = &p.sources[0];
        assert_eq!(a.name, "ddsky");
        assert_eq!(a.service.as_deref(), Some("skypilot-worker"));
        assert_eq!(a.source.as_deref(), Some("python"));
        assert_eq!(a.sourcecategory.as_deref(), Some("training"));
        assert_eq!(a.tags, vec!["metta_run_id:r1", "skypilot_node_rank:0"]);
        assert_eq!(
            (a.tailing_mode.as_str(), a.start_position()),
            ("", StartPosition::End)
        );
        assert_eq!(a.error, None);
        let b = &p.sources[1];
        // A comma string is split, spaces kept (StringSliceField).
        assert_eq!(b.tags, vec!["a:b", " c:d"]);
        assert_eq!(b.exclude_paths, vec!["/var/log/job/old*.log"]);
        assert_eq!(b.start_position(), StartPosition::ForceEnd);
        assert_eq!(b.error, None);
        assert_eq!(
            p.sources[2].error.as_deref(),
            Some("file source must have a path")
        );
        assert_eq!(
            p.sources[3].error.as_deref(),
            Some("invalid tailing mode 'Beginning' for /var/log/x.log")
        );
        assert_eq!(
            p.sources[4].error.as_deref(),
            Some(
                "tailing from the beginning is not supported for wildcard path /var/log/job/*.log"
            )
        );
        assert!(p.sources[5]
            .error
            .as_deref()
            .unwrap()
            .starts_with("tailing from the beginning"));
        // Four refusals and the unsupported tcp source, each a warning.
        assert_eq!(p.warnings.len(), 5, "{:?}", p.warnings);
        assert!(p.warnings[0].starts_with("Invalid logs configuration: "));

        // No logs list: nothing; broken YAML: one warning, nothing.
        assert_eq!(
            parse_logs_config("x", "x.yaml", "init_config:\ninstances: [{}]\n"),
            Parsed::default()
        );
        let broken = parse_logs_config("x", "x.yaml", "logs: [\n");
        assert!(broken.sources.is_empty() && broken.warnings.len() == 1);
        // A wildcard with end, or a plain path with beginning, is fine.
        assert_eq!(validate("/a/*.log", "end"), Ok(()));
        assert_eq!(validate("/a/b.log", "beginning"), Ok(()));
        assert_eq!(validate("/a/b.log", "forceBeginning"), Ok(()));
        assert!(validate("/a/[ab].log", "beginning").is_err());
    }

    #[test]
    fn confd_is_read_one_level_deep_and_the_s6_copy_takes_yaml_only() {
        let root = temp("confd");
        let custom = root.join("conf.d");
        std::fs::create_dir_all(custom.join("ddsky.d")).unwrap();
        std::fs::create_dir_all(custom.join("deep/er.d")).unwrap();
        std::fs::write(custom.join("ddsky.d/conf.yaml"), "logs: []\n").unwrap();
        std::fs::write(custom.join("ddsky.d/other.yml"), "logs: []\n").unwrap();
        std::fs::write(custom.join("top.yaml"), "logs: []\n").unwrap();
        std::fs::write(custom.join("deep/er.d/x.yaml"), "logs: []\n").unwrap();
        std::fs::write(custom.join("notes.txt"), "x").unwrap();
        let etc = root.join("etc");
        let mut copied = copy_custom_files(&custom, &etc);
        copied.sort();
        assert_eq!(
            copied,
            vec![
                etc.join("conf.d/ddsky.d/conf.yaml"),
                etc.join("conf.d/deep/er.d/x.yaml"),
                etc.join("conf.d/top.yaml"),
            ]
        );
        // A .yml mounted straight into conf.d counts; deep files do not.
        std::fs::write(etc.join("conf.d/ddsky.d/mounted.yml"), "logs: []\n").unwrap();
        let found: Vec<(String, String)> = read_confd(&etc.join("conf.d"))
            .into_iter()
            .map(|(n, p)| (n, p.strip_prefix(&etc).unwrap().display().to_string()))
            .collect();
        assert_eq!(
            found,
            vec![
                ("ddsky".to_string(), "conf.d/ddsky.d/conf.yaml".to_string()),
                (
                    "ddsky".to_string(),
                    "conf.d/ddsky.d/mounted.yml".to_string()
                ),
                ("top".to_string(), "conf.d/top.yaml".to_string()),
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn globs_match_as_go_does_and_newest_names_come_first() {
        assert_eq!(match_element("*.log", "a.log"), Ok(true));
        assert_eq!(match_element("*.log", ".hidden.log"), Ok(true));
        assert_eq!(match_element("r?n-[0-9].log", "run-3.log"), Ok(true));
        assert_eq!(match_element("[^a]*", "abc"), Ok(false));
        assert_eq!(match_element("[a-c]x", "bx"), Ok(true));
        assert_eq!(match_element("\\*", "*"), Ok(true));
        assert_eq!(match_element("[", "x"), Err(BadPattern));
        assert_eq!(match_element("a[", "b"), Ok(false));
        let root = temp("glob");
        for f in [
            "a/2026-01-01.log",
            "a/2026-01-02.log",
            "b/2026-01-01.log",
            "a/sub/deep.log",
            "a/x.txt",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let r = root.display().to_string();
        let got = glob(&format!("{r}/*/*.log")).unwrap();
        assert_eq!(
            got,
            vec![
                format!("{r}/a/2026-01-01.log"),
                format!("{r}/a/2026-01-02.log"),
                format!("{r}/b/2026-01-01.log"),
            ]
        );
        // `**` is one element, not a recursive walk.
        assert_eq!(glob(&format!("{r}/**/*.log")).unwrap(), got);
        assert_eq!(
            reverse_lexicographic(got),
            vec![
                format!("{r}/a/2026-01-02.log"),
                format!("{r}/b/2026-01-01.log"),
                format!("{r}/a/2026-01-01.log"),
            ]
        );
        let mut s = src(&format!("{r}/a/*.log"), "");
        s.exclude_paths = vec![format!("{r}/a/*-01.log")];
        assert_eq!(collect_files(&s), Ok(vec![format!("{r}/a/2026-01-02.log")]));
        let missing = src(&format!("{r}/nope.log"), "");
        assert_eq!(
            collect_files(&missing),
            Err(format!(
                "cannot read file {r}/nope.log: stat {r}/nope.log: no such file or directory"
            ))
        );
        let none = src(&format!("{r}/c/*.log"), "");
        assert_eq!(
            collect_files(&none),
            Err(format!("could not find any file matching pattern {r}/c/*.log, check that all its subdirectories are executable"))
        );
        assert_eq!(
            base_and_dir("/var/log/job/run.log"),
            ("run.log".into(), "/var/log/job".into())
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn start_positions_follow_the_launcher_and_the_registry() {
        use StartPosition::*;
        // Files found when the source is added: the configured position, unset = end.
        assert_eq!(start_at(End, None), Start::End);
        assert_eq!(start_at(Beginning, None), Start::At(0));
        // A registry offset wins over beginning/end...
        assert_eq!(start_at(End, Some((120, ""))), Start::At(120));
        assert_eq!(start_at(End, Some((120, "end"))), Start::At(120));
        assert_eq!(
            start_at(Beginning, Some((120, "beginning"))),
            Start::At(120)
        );
        assert_eq!(start_at(Beginning, Some((120, ""))), Start::At(120));
        // ...but not over force*, nor after a beginning -> end change.
        assert_eq!(start_at(ForceBeginning, Some((120, ""))), Start::At(0));
        assert_eq!(start_at(ForceEnd, Some((120, ""))), Start::End);
        assert_eq!(start_at(End, Some((120, "beginning"))), Start::End);
        // The scan asks for Beginning: a new file is read whole, unless the registry has it.
        assert_eq!(start_at(Beginning, None), Start::At(0));
        assert!(did_rotate((1, 2), (1, 3), 100, 10));
        assert!(did_rotate((1, 2), (1, 2), 5, 10));
        assert!(!did_rotate((1, 2), (1, 2), 10, 10));
    }
}

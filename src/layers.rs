//! The crate's layers, lowest first, and the test that keeps them: a module may name (through
//! `crate::` paths) modules of its own layer or lower ones, never a higher one, and no modules may
//! name each other round in a cycle. Test code (after a `#[cfg(test)]` line) is not read, as
//! `shared/tools/cycles.py` does not read it: tests may use anything.
//!
//! - core: pure decisions and parsers over plain data, and the plumbing every layer shares (exit
//!   codes, redaction, output, interrupts). Talks to nothing outside the process except through
//!   what the caller hands it (placement and ports read /proc, nothing else).
//! - edge: the modules that talk to the world: Docker (`engine`), Datadog's API (`datadog_api`),
//!   AWS (`secrets`), stderr (`logging`). Each offers primitives and plain data, and never names
//!   what is built from them.
//! - domain: what ddsky knows about the agent and the job's containers, built on the edges: asking
//!   the agent, discovery, start-up, the drain, and the pure verdicts over the edges' data
//!   (reconcile, doctor, verify).
//! - input: the command line (`cli`) and its validation into core settings (`settings`).
//! - commands: orchestration, one module per command.
//! - main: parse, run, map the outcome to an exit code.

/// Top-level modules by layer, lowest first (`main` is the crate root).
pub const LAYERS: &[(&str, &[&str])] = &[
    (
        "core",
        &[
            "agent_output",
            "dashboard",
            "error_chain",
            "exit",
            "gpu",
            "interrupt",
            "joblog",
            "k8s",
            "key",
            "output",
            "placement",
            "ports",
            "redact",
            "reference",
            "registry",
            "restarts",
            "spec",
            "tags",
        ],
    ),
    (
        "edge",
        &["datadog_api", "engine", "logging", "secrets", "tls"],
    ),
    (
        "domain",
        &[
            "agent",
            "batch",
            "discovery",
            "doctor",
            "drain",
            "progress",
            "reconcile",
            "startup",
            "verify",
        ],
    ),
    ("input", &["cli", "settings"]),
    ("commands", &["commands"]),
    // `layers` is this test-only module, `docs_check` the docs' test.
    ("main", &["main", "layers", "docs_check"]),
];

#[cfg(test)]
mod tests {
    use super::LAYERS;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Module path (`commands::up::converge`; `main` for the root) -> its source, read from `dir`.
    fn read_modules(dir: &Path) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let rel = path.strip_prefix(dir).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if parts.last().is_some_and(|p| p == "mod") {
                    parts.pop();
                }
                let module = match parts.as_slice() {
                    [only] if only == "main" || only == "lib" => "main".to_owned(),
                    _ => parts.join("::"),
                };
                out.insert(module, std::fs::read_to_string(&path).unwrap());
            }
        }
        out
    }

    fn is_ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }

    /// Every path a `crate::` names, `{..}` groups expanded: `use crate::{a::{b, c}, d}` gives
    /// `a::b`, `a::c`, `d`.
    fn crate_paths(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(at) = text[from..].find("crate::") {
            let start = from + at;
            from = start + "crate::".len();
            let word_before = text[..start].chars().next_back().is_some_and(is_ident);
            if !word_before {
                expand("", &text[from..], &mut out);
            }
        }
        out
    }

    /// Reads one path (or group) at the start of `rest`, with `prefix` before it.
    fn expand(prefix: &str, rest: &str, out: &mut Vec<String>) {
        let rest = rest.trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        expand(prefix, &group[item_start..i], out);
                        return;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(prefix, &group[item_start..i], out);
                        item_start = i + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let ident_len = rest.find(|c| !is_ident(c)).unwrap_or(rest.len());
        if ident_len == 0 {
            return;
        }
        let ident = &rest[..ident_len];
        let path = if prefix.is_empty() {
            ident.to_owned()
        } else {
            format!("{prefix}::{ident}")
        };
        match rest[ident_len..].strip_prefix("::") {
            Some(more) => expand(&path, more, out),
            None => out.push(path),
        }
    }

    /// module -> the modules it names, each path resolved to the deepest module that exists.
    fn edges(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
        let mut edges = BTreeMap::new();
        for (module, text) in modules {
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let mut named = BTreeSet::new();
            for path in crate_paths(code) {
                let mut parts: Vec<&str> = path.split("::").collect();
                while !parts.is_empty() && !modules.contains_key(&parts.join("::")) {
                    parts.pop();
                }
                let target = parts.join("::");
                if !parts.is_empty() && &target != module {
                    named.insert(target);
                }
            }
            edges.insert(module.clone(), named);
        }
        edges
    }

    fn layer_of(module: &str) -> Option<(usize, &'static str)> {
        let top = module.split("::").next().unwrap_or(module);
        LAYERS
            .iter()
            .enumerate()
            .find(|(_, (_, members))| members.contains(&top))
            .map(|(rank, (name, _))| (rank, *name))
    }

    /// Groups of modules that name each other round (strongly connected, more than one module).
    fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
        // Two modules are in one cycle when each reaches the other.
        let reach = |from: &String| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from.clone()];
            while let Some(m) = todo.pop() {
                for next in edges.get(&m).into_iter().flatten() {
                    if seen.insert(next.clone()) {
                        todo.push(next.clone());
                    }
                }
            }
            seen
        };
        let reaches: BTreeMap<&String, BTreeSet<String>> =
            edges.keys().map(|m| (m, reach(m))).collect();
        let mut placed = BTreeSet::new();
        let mut out = Vec::new();
        for m in edges.keys() {
            if placed.contains(m) || !reaches[m].contains(m) {
                continue;
            }
            let group: Vec<String> = reaches[m]
                .iter()
                .filter(|o| reaches.get(o).is_some_and(|r| r.contains(m)))
                .cloned()
                .collect();
            placed.extend(group.iter().cloned());
            out.push(group);
        }
        out
    }

    /// Every breach of the layering, one line each.
    fn breaches(modules: &BTreeMap<String, String>) -> Vec<String> {
        let edges = edges(modules);
        let mut out = Vec::new();
        for module in modules.keys() {
            if layer_of(module).is_none() {
                out.push(format!(
                    "{module} has no layer: add it to LAYERS in src/layers.rs"
                ));
            }
        }
        for (from, named) in &edges {
            for to in named {
                if let (Some((a, a_name)), Some((b, b_name))) = (layer_of(from), layer_of(to)) {
                    if b > a {
                        out.push(format!(
                            "{from} ({a_name}) names {to} ({b_name}), a higher layer"
                        ));
                    }
                }
            }
        }
        for group in cycles(&edges) {
            out.push(format!("import cycle among {}", group.join(", ")));
        }
        out
    }

    fn modules(files: &[(&str, &str)]) -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(m, t)| ((*m).to_owned(), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn the_crate_keeps_its_layers_and_has_no_import_cycle() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let found = breaches(&read_modules(&src));
        assert!(found.is_empty(), "{}", found.join("\n"));
    }

    #[test]
    fn a_module_naming_a_higher_layer_is_caught() {
        let found = breaches(&modules(&[
            ("engine", "fn f() { crate::commands::drain_logs(); }"),
            ("commands", "use crate::engine::Engine;"),
            ("commands::down", ""),
        ]));
        assert!(found
            .iter()
            .any(|b| b == "engine (edge) names commands (commands), a higher layer"));
        assert!(found
            .iter()
            .any(|b| b == "import cycle among commands, engine"));
    }

    #[test]
    fn a_cycle_inside_one_layer_is_caught() {
        let found = breaches(&modules(&[
            ("agent", "use crate::batch::{\n    self, BatchCommand,\n};"),
            ("batch", "use crate::spec::X;\nuse crate::{agent::Client};"),
            ("spec", ""),
        ]));
        assert_eq!(found, vec!["import cycle among agent, batch"]);
    }

    #[test]
    fn groups_are_expanded_and_test_code_is_not_read() {
        let text = "use crate::{engine::{self, Engine}, spec::X};\n\
                    // a mycrate::commands mention is not crate::\n\
                    #[cfg(test)]\nmod tests { use crate::commands::Failure; }";
        assert_eq!(
            crate_paths(text),
            vec![
                "engine::self",
                "engine::Engine",
                "spec::X",
                "commands::Failure"
            ]
        );
        let found = breaches(&modules(&[
            ("reconcile", text),
            ("engine", ""),
            ("spec", ""),
            ("commands", ""),
        ]));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_module_without_a_layer_is_caught() {
        let found = breaches(&modules(&[("newthing", "")]));
        assert_eq!(
            found,
            vec!["newthing has no layer: add it to LAYERS in src/layers.rs"]
        );
    }
}

//! The documentation checked against the tree and the command line: every relative link in README.md
//! and docs/*.md points at a file (and heading) that exists, and every ddsky command line that a
//! ```sh block shows is accepted by the parser the binary uses, so the docs cannot drift from either.
//!
//! Markdown and shell are read only as far as these docs need: fenced blocks, inline links, ATX
//! headings; words, quotes, `\` continuations, `|`, `&&`, `;`, `( )`, `$( )`, `<( )`, redirections
//! and comments.

use crate::cli::Cli;
use clap::Parser;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// README.md and every docs/*.md, read once.
struct Document {
    path: PathBuf,
    text: String,
}

fn documents() -> Vec<Document> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs/ is readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Document { path, text }
        })
        .collect()
}

/// What a Markdown file is made of, as far as these checks go.
#[derive(Debug, Default, PartialEq)]
struct Parsed {
    /// (line number, target) of every inline link and reference definition outside code.
    links: Vec<(usize, String)>,
    /// Heading texts, in order.
    headings: Vec<String>,
    /// (line number of the fence, contents) of every ```sh / ```bash / ```shell block.
    shell_blocks: Vec<(usize, String)>,
}

fn parse_markdown(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    // The open fence: its marker (``` or ~~~, with its length) and, for a shell block, its contents.
    let mut fence: Option<(String, Option<(usize, String)>)> = None;
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        let trimmed = line.trim_start();
        if let Some((marker, block)) = &mut fence {
            if trimmed.starts_with(marker.as_str()) && trimmed.trim_end() == marker.as_str() {
                if let Some(block) = block.take() {
                    parsed.shell_blocks.push(block);
                }
                fence = None;
            } else if let Some((_, contents)) = block {
                // A block inside a list item is indented as a whole; the shell does not mind.
                contents.push_str(trimmed);
                contents.push('\n');
            }
            continue;
        }
        if let Some(marker) = fence_marker(trimmed) {
            let info = trimmed[marker.len()..].trim();
            let language = info.split_whitespace().next().unwrap_or("");
            let shell = matches!(language, "sh" | "bash" | "shell");
            fence = Some((marker, shell.then(|| (number, String::new()))));
            continue;
        }
        if let Some(heading) = heading_text(trimmed) {
            parsed.headings.push(heading);
        }
        let prose = without_code_spans(line);
        parsed
            .links
            .extend(link_targets(&prose).into_iter().map(|t| (number, t)));
    }
    parsed
}

/// "```" or "~~~" (three or more) when the line opens a fence.
fn fence_marker(trimmed: &str) -> Option<String> {
    for c in ['`', '~'] {
        let n = trimmed.chars().take_while(|&x| x == c).count();
        if n >= 3 {
            return Some(std::iter::repeat_n(c, n).collect());
        }
    }
    None
}

/// The text of an ATX heading (`## Title`), or None.
fn heading_text(trimmed: &str) -> Option<String> {
    let level = trimmed.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &trimmed[level..];
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some(rest.trim().trim_end_matches('#').trim().to_string())
}

/// The line with its `code spans` removed (a link inside one is text, not a link).
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + ticks..];
        let closing = "`".repeat(ticks);
        match after.find(&closing) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                out.push_str(&rest[start..]);
                return out;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Targets of `[text](target)` and `[label]: target` on one line of prose.
fn link_targets(prose: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let trimmed = prose.trim_start();
    if trimmed.starts_with('[') {
        if let Some(close) = trimmed.find("]:") {
            if let Some(target) = trimmed[close + 2..].split_whitespace().next() {
                targets.push(target.trim_matches(['<', '>']).to_string());
            }
        }
    }
    let mut rest = prose;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find(')').unwrap_or(after.len());
        // `[text](target "title")`: the target is the first word.
        if let Some(target) = after[..end].split_whitespace().next() {
            targets.push(target.trim_matches(['<', '>']).to_string());
        }
        rest = &after[end..];
    }
    targets
}

/// The anchor GitHub gives a heading: lowercase, markup and punctuation dropped (`-` and `_` kept),
/// spaces to `-`.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    // Link text only: `[text](url)` -> `text`.
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        match rest[open..].find("](") {
            Some(mid) => {
                let mid = open + mid;
                let end = rest[mid..].find(')').map_or(rest.len(), |e| mid + e + 1);
                text.push_str(&rest[..open]);
                text.push_str(&rest[open + 1..mid]);
                rest = &rest[end..];
            }
            None => break,
        }
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor of a document: each heading's slug, repeated ones numbered `-1`, `-2`, ... as
/// GitHub does.
fn anchors(headings: &[String]) -> HashSet<String> {
    let mut seen = HashSet::new();
    for heading in headings {
        let base = slug(heading);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:")
}

/// What is wrong with every relative link of the documents, one line each.
fn broken_links(documents: &[Document]) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut problems = Vec::new();
    for doc in documents {
        let parsed = parse_markdown(&doc.text);
        for (line, target) in parsed.links.iter().filter(|(_, t)| !is_external(t)) {
            checked += 1;
            let at = format!("{}:{line}: link {target:?}", doc.path.display());
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                doc.path.clone()
            } else {
                doc.path.parent().expect("a file has a folder").join(file)
            };
            if !path.exists() {
                problems.push(format!("{at}: no file {}", path.display()));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            let headings = if file.is_empty() {
                parsed.headings.clone()
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                parse_markdown(&text).headings
            } else {
                problems.push(format!("{at}: #{anchor} into a file that is not text"));
                continue;
            };
            if !anchors(&headings).contains(anchor) {
                problems.push(format!("{at}: no heading whose anchor is #{anchor}"));
            }
        }
    }
    (checked, problems)
}

/// The simple commands of a shell script, each as its words after quote removal. `$( )`, `<( )` and
/// `( )` contribute the commands inside them; redirections and their targets are dropped.
fn simple_commands(script: &str) -> Vec<Vec<String>> {
    /// A command interrupted by `$(` / `(`: resumed at the matching `)`.
    struct Outer {
        words: Vec<String>,
        word: String,
        in_word: bool,
        double_quoted: bool,
    }
    let mut commands = Vec::new();
    let mut outers: Vec<Outer> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut double_quoted = false;
    // The next word is a redirection's target, not an argument.
    let mut redirect_target = false;
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;

    let end_word = |words: &mut Vec<String>,
                    word: &mut String,
                    in_word: &mut bool,
                    redirect_target: &mut bool| {
        if *in_word {
            if *redirect_target {
                *redirect_target = false;
            } else {
                words.push(std::mem::take(word));
            }
        }
        word.clear();
        *in_word = false;
    };

    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if double_quoted {
            match (c, next) {
                ('"', _) => double_quoted = false,
                ('\\', Some('\n')) => i += 1,
                ('\\', Some(n @ ('"' | '\\' | '$' | '`'))) => {
                    word.push(n);
                    i += 1;
                }
                ('$', Some('(')) => {
                    outers.push(Outer {
                        words: std::mem::take(&mut words),
                        word: std::mem::take(&mut word),
                        in_word: true,
                        double_quoted: true,
                    });
                    double_quoted = false;
                    in_word = false;
                    i += 1;
                }
                _ => word.push(c),
            }
            i += 1;
            continue;
        }
        match (c, next) {
            ('\\', Some('\n')) => i += 1,
            ('\\', Some(n)) => {
                word.push(n);
                in_word = true;
                i += 1;
            }
            ('\'', _) => {
                let close = chars[i + 1..]
                    .iter()
                    .position(|&x| x == '\'')
                    .map_or(chars.len(), |p| i + 1 + p);
                word.extend(&chars[i + 1..close]);
                in_word = true;
                i = close;
            }
            ('"', _) => {
                double_quoted = true;
                in_word = true;
            }
            ('#', _) if !in_word => {
                while i + 1 < chars.len() && chars[i + 1] != '\n' {
                    i += 1;
                }
            }
            (' ' | '\t', _) => end_word(&mut words, &mut word, &mut in_word, &mut redirect_target),
            ('\n' | ';' | '&' | '|', _) => {
                end_word(&mut words, &mut word, &mut in_word, &mut redirect_target);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
                if matches!(
                    (c, next),
                    ('&', Some('&')) | ('|', Some('|')) | (';', Some(';'))
                ) {
                    i += 1;
                }
            }
            ('$', Some('(')) | ('(', _) | ('<', Some('(')) => {
                let in_a_word = c == '$';
                if !in_a_word {
                    end_word(&mut words, &mut word, &mut in_word, &mut redirect_target);
                }
                outers.push(Outer {
                    words: std::mem::take(&mut words),
                    word: std::mem::take(&mut word),
                    in_word: in_a_word || in_word,
                    double_quoted: false,
                });
                in_word = false;
                if c != '(' {
                    i += 1;
                }
            }
            (')', _) if !outers.is_empty() => {
                end_word(&mut words, &mut word, &mut in_word, &mut redirect_target);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
                let outer = outers.pop().expect("checked");
                words = outer.words;
                word = outer.word;
                in_word = outer.in_word;
                double_quoted = outer.double_quoted;
                if in_word {
                    // The substitution's output stands in for it: one placeholder word part.
                    word.push_str("SUBSTITUTED");
                }
            }
            ('<' | '>', _) => {
                // `2>&1`, `>file`, `>> file`, `< file`: a file descriptor number before it is not a word.
                if in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                end_word(&mut words, &mut word, &mut in_word, &mut redirect_target);
                while matches!(chars.get(i + 1), Some('>' | '<')) {
                    i += 1;
                }
                if chars.get(i + 1) == Some(&'&') {
                    i += 1;
                    while chars
                        .get(i + 1)
                        .is_some_and(|d| d.is_ascii_digit() || *d == '-')
                    {
                        i += 1;
                    }
                } else {
                    redirect_target = true;
                }
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
        i += 1;
    }
    end_word(&mut words, &mut word, &mut in_word, &mut redirect_target);
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

/// The arguments after ddsky when the command runs ddsky (`ddsky`, `./target/release/ddsky`,
/// `~/.ddsky/ddsky`), after any leading `NAME=value` assignments.
fn ddsky_arguments(command: &[String]) -> Option<&[String]> {
    let is_assignment = |w: &String| {
        w.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    let start = command.iter().position(|w| !is_assignment(w))?;
    let program = &command[start];
    (program == "ddsky" || program.ends_with("/ddsky")).then(|| &command[start + 1..])
}

/// Every ddsky command line of the documents' shell blocks that ddsky's parser refuses.
fn refused_command_lines(documents: &[Document]) -> (usize, Vec<String>) {
    use clap::error::ErrorKind;
    let mut checked = 0;
    let mut problems = Vec::new();
    for doc in documents {
        for (line, block) in parse_markdown(&doc.text).shell_blocks {
            for command in simple_commands(&block) {
                let Some(arguments) = ddsky_arguments(&command) else {
                    continue;
                };
                checked += 1;
                let argv = std::iter::once("ddsky").chain(arguments.iter().map(String::as_str));
                if let Err(e) = Cli::try_parse_from(argv) {
                    if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                        let first = e.to_string();
                        let first = first.lines().next().unwrap_or_default();
                        problems.push(format!(
                            "{}: the sh block at line {line}: `{}`: {first}",
                            doc.path.display(),
                            command.join(" ")
                        ));
                    }
                }
            }
        }
    }
    (checked, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_relative_link_of_the_docs_reaches_a_file_and_heading() {
        let documents = documents();
        let (checked, problems) = broken_links(&documents);
        println!("{checked} relative links checked");
        assert!(
            checked >= 40,
            "only {checked} relative links found: is the parser still reading the docs?"
        );
        assert!(
            problems.is_empty(),
            "broken links:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn every_ddsky_command_line_in_the_docs_is_accepted_by_the_cli() {
        let documents = documents();
        let readme = parse_markdown(&documents[0].text);
        let first = simple_commands(&readme.shell_blocks[0].1);
        assert!(
            first
                .iter()
                .any(|c| ddsky_arguments(c) == Some(&words(&["up", "--dry-run"])[..])),
            "the README's first block should run `./target/release/ddsky up --dry-run`: {first:?}"
        );
        let (checked, problems) = refused_command_lines(&documents);
        println!("{checked} ddsky command lines checked");
        assert!(
            checked >= 10,
            "only {checked} ddsky command lines found: is the parser still reading the docs?"
        );
        assert!(
            problems.is_empty(),
            "command lines ddsky refuses:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn a_misspelt_flag_or_a_broken_link_is_reported() {
        let doc = Document {
            path: Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"),
            text: "# Title\n[ok](#title) [gone](docs/nothing-here.md) [bad](#untitled)\n\
                   ```sh\nddsky up --dry-rn\nddsky status --expect metta\n```\n"
                .to_string(),
        };
        let docs = [doc];
        let (_, links) = broken_links(&docs);
        assert_eq!(links.len(), 2, "{links:?}");
        assert!(links[0].contains("nothing-here.md") && links[1].contains("#untitled"));
        let (checked, refused) = refused_command_lines(&docs);
        assert_eq!(checked, 2);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0].contains("--dry-rn"), "{refused:?}");
    }

    #[test]
    fn shell_words_follow_quotes_continuations_and_operators() {
        let script = r#"cargo build --release && DD_API_KEY=0123 ./target/release/ddsky up --dry-run
ddsky verify --run-id "$RUN" \
  --wait 3m   # a comment --bogus
ddsky status --format json | jq '.agent | .health' > out.json 2>&1
eval "$(ddsky env --format shell)"; (bash scripts/test.sh &)
docker run --env-file <(ddsky env --format env-file) 'metta:latest'
"#;
        assert_eq!(
            simple_commands(script),
            vec![
                words(&["cargo", "build", "--release"]),
                words(&[
                    "DD_API_KEY=0123",
                    "./target/release/ddsky",
                    "up",
                    "--dry-run"
                ]),
                words(&["ddsky", "verify", "--run-id", "$RUN", "--wait", "3m"]),
                words(&["ddsky", "status", "--format", "json"]),
                words(&["jq", ".agent | .health"]),
                words(&["ddsky", "env", "--format", "shell"]),
                words(&["eval", "SUBSTITUTED"]),
                words(&["bash", "scripts/test.sh"]),
                words(&["ddsky", "env", "--format", "env-file"]),
                words(&["docker", "run", "--env-file", "metta:latest"]),
            ]
        );
    }

    #[test]
    fn ddsky_is_found_after_assignments_and_by_path() {
        let cmd = words(&["A=1", "B_2=x y", "~/.ddsky/ddsky", "run", "--", "true"]);
        assert_eq!(ddsky_arguments(&cmd), Some(&cmd[3..]));
        assert_eq!(ddsky_arguments(&words(&["ddsky_setup", "up"])), None);
        assert_eq!(ddsky_arguments(&words(&["sky", "launch"])), None);
    }

    #[test]
    fn anchors_are_githubs() {
        let headings = words(&[
            "ddsky up",
            "The job's logs: ddsky run",
            "Setup, and the worst-case delay",
            "`ddsky verify` [flags](x.md)",
            "ddsky up",
        ]);
        let got = anchors(&headings);
        for a in [
            "ddsky-up",
            "the-jobs-logs-ddsky-run",
            "setup-and-the-worst-case-delay",
            "ddsky-verify-flags",
            "ddsky-up-1",
        ] {
            assert!(got.contains(a), "{a} not in {got:?}");
        }
    }

    #[test]
    fn code_is_not_prose() {
        let parsed = parse_markdown(
            "# A\n`[x](nowhere.md)` and [y](there.md)\n```\n[z](inside.md)\n# not a heading\n```\n",
        );
        assert_eq!(parsed.links, vec![(2, "there.md".to_string())]);
        assert_eq!(parsed.headings, vec!["A".to_string()]);
        assert!(parsed.shell_blocks.is_empty());
    }
}

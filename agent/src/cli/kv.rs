//! `muster kv put|get|delete|export|import`: Consul's KV commands, word for word (messages,
//! flags, exit codes), and their formatting (the `-detailed` table, `key:value` lines, the export
//! JSON) as pure functions.

use base64::Engine;
use muster_api::client::KvWriteOptions;
use muster_api::{KvExportEntry, KvPair};
use serde::{Deserialize, Serialize};

use super::http_flags;
use super::{Flag, Parsed, Spec, Ui};

pub const SYNOPSIS: &str = "Interact with the key-value store";

/// The `kv` subcommands and their synopses, sorted.
pub const SUBCOMMANDS: &[(&str, &str)] = &[
    ("delete", "Removes data from the KV store"),
    ("export", "Exports a tree from the KV store as JSON"),
    ("get", "Retrieves or lists data from the KV store"),
    ("import", "Imports a tree stored as JSON to the KV store"),
    ("put", "Sets or updates data in the KV store"),
];

/// `muster kv` itself (it only prints help).
pub fn spec() -> Spec {
    Spec {
        name: "kv",
        help: KV_HELP,
        flags: Vec::new(),
    }
}

/// The declaration of `kv <sub>`.
pub fn sub_spec(sub: &str) -> Option<Spec> {
    let (help, own) = match sub {
        "put" => (PUT_HELP, put_flags()),
        "get" => (GET_HELP, get_flags()),
        "delete" => (DELETE_HELP, delete_flags()),
        "export" => (EXPORT_HELP, Vec::new()),
        "import" => (
            IMPORT_HELP,
            vec![Flag::string(
                "prefix",
                "string",
                "Key prefix for imported data",
            )],
        ),
        _ => return None,
    };
    let mut flags = http_flags::all();
    flags.extend(own);
    Some(Spec {
        name: match sub {
            "put" => "kv put",
            "get" => "kv get",
            "delete" => "kv delete",
            "export" => "kv export",
            _ => "kv import",
        },
        help,
        flags,
    })
}

/// Runs `kv <sub>` with the arguments after the subcommand name.
pub async fn run(sub: &str, args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let Some(spec) = sub_spec(sub) else {
        ui.error(&spec().help_text());
        return 1;
    };
    let parsed = match spec.parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match sub {
        "put" => put(&parsed, ui).await,
        "get" => get(&parsed, ui).await,
        "delete" => delete(&parsed, ui).await,
        "export" => export(&parsed, ui).await,
        _ => import(&parsed, ui).await,
    }
}

use super::http_flags::connect;

/// Consul strips one leading `/` from read/delete/export keys ("pairs cannot start with a /").
fn strip_slash(key: &str) -> String {
    key.strip_prefix('/').unwrap_or(key).to_string()
}

// ---- put ------------------------------------------------------------------------------------

fn put_flags() -> Vec<Flag> {
    vec![
        Flag::bool(
            "cas",
            "Perform a Check-And-Set operation. Specifying this value also requires the \
             -modify-index flag to be set. The default value is false.",
        ),
        Flag::uint(
            "flags",
            "Unsigned integer value to assign to this key-value pair. This value is not read \
             by Muster, so clients can use this value however makes sense for their use case. \
             The default value is 0 (no flags).",
        ),
        Flag::bool(
            "base64",
            "Treat the data as base 64 encoded. The default value is false.",
        ),
        Flag::uint(
            "modify-index",
            "Unsigned integer representing the ModifyIndex of the key. This is used in \
             combination with the -cas flag.",
        ),
        Flag::string(
            "session",
            "string",
            "User-defined identifer for this session as a string. This is commonly used with \
             the -acquire and -release operations to build robust locking, but it can be set \
             on any key. The default value is empty (no session).",
        ),
        Flag::bool(
            "acquire",
            "Obtain a lock on the key. If the key does not exist, this operation will create \
             the key and obtain the lock. The session must already exist and be specified via \
             the -session flag. The default value is false.",
        ),
        Flag::bool(
            "release",
            "Forfeit the lock on the key at the given path. This requires the -session flag to \
             be set. The key must be held by the session in order to be unlocked. The default \
             value is false.",
        ),
    ]
}

/// Consul's `helpers.LoadDataSource`: `""` is empty, `@file` reads the file, a lone `-` reads
/// stdin, anything else (including `-foo`) is the data itself.
pub fn load_data_source(data: &str, ui: &mut Ui<'_>) -> Result<Vec<u8>, String> {
    if let Some(path) = data.strip_prefix('@') {
        return std::fs::read(path)
            .map_err(|e| format!("Failed to read file: {}", go_io_error(&e, path)));
    }
    if data == "-" {
        return ui
            .read_stdin()
            .map_err(|e| format!("Failed to read stdin: {e}"));
    }
    Ok(data.as_bytes().to_vec())
}

/// Go's `*PathError` text: `open <path>: no such file or directory`.
fn go_io_error(e: &std::io::Error, path: &str) -> String {
    let reason = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => {
            let text = e.to_string();
            // Drop Rust's " (os error N)" suffix.
            match text.rfind(" (os error") {
                Some(i) => text[..i].to_lowercase(),
                None => text,
            }
        }
    };
    format!("open {path}: {reason}")
}

/// Go's `base64.StdEncoding.DecodeString`: padded standard alphabet, `\r` and `\n` ignored.
fn decode_base64(data: &[u8]) -> Result<Vec<u8>, String> {
    let cleaned: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&cleaned)
        .map_err(|e| e.to_string())
}

async fn put(p: &Parsed, ui: &mut Ui<'_>) -> u8 {
    let (key, data) = match p.args.as_slice() {
        [] => {
            ui.error("Error! Missing KEY argument");
            return 1;
        }
        [key] => (key.clone(), Vec::new()),
        [key, data] => match load_data_source(data, ui) {
            Ok(d) => (key.clone(), d),
            Err(e) => {
                ui.error(&format!("Error! {e}"));
                return 1;
            }
        },
        more => {
            ui.error(&format!(
                "Error! Too many arguments (expected 1 or 2, got {})",
                more.len()
            ));
            return 1;
        }
    };
    let value = if p.flag("base64") {
        match decode_base64(&data) {
            Ok(v) => v,
            Err(e) => {
                ui.error(&format!("Error! Cannot base 64 decode data: {e}"));
                return 1;
            }
        }
    } else {
        data
    };
    let session = p.string("session").unwrap_or_default();
    let (acquire, release, cas) = (p.flag("acquire"), p.flag("release"), p.flag("cas"));
    if (acquire || release) && session.is_empty() {
        ui.error("Error! Missing -session (required with -acquire and -release)");
        return 1;
    }
    let Some((client, _)) = connect(p, ui) else {
        return 1;
    };
    let modify_index = p.uint("modify-index").unwrap_or(0);
    let mut opts = KvWriteOptions {
        flags: p.uint("flags").filter(|f| *f != 0),
        ..Default::default()
    };
    if cas {
        opts.cas = Some(modify_index);
        return match client.kv_put_with(&key, &value, &opts).await {
            Err(e) => {
                ui.error(&format!("Error! Did not write to {key}: {e}"));
                1
            }
            Ok(false) if modify_index == 0 => {
                ui.error(&format!(
                    "Error! Did not write to {key}: CAS performed with index=0 and key already exists."
                ));
                1
            }
            Ok(false) => {
                ui.error(&format!("Error! Did not write to {key}: CAS failed"));
                1
            }
            Ok(true) => {
                ui.output(&format!("Success! Data written to: {key}"));
                0
            }
        };
    }
    if acquire || release {
        let (verb, done) = if acquire {
            opts.acquire = Some(session);
            ("acquire", "acquired")
        } else {
            opts.release = Some(session);
            ("release", "released")
        };
        return report(
            ui,
            client.kv_put_with(&key, &value, &opts).await,
            format!("Success! Lock {done} on: {key}"),
            format!("Error! Did not {verb} lock"),
            |e| format!("Error! Failed writing data: {e}"),
        );
    }
    match client.kv_put_with(&key, &value, &opts).await {
        Err(e) => {
            ui.error(&format!("Error! Failed writing data: {e}"));
            1
        }
        Ok(_) => {
            ui.output(&format!("Success! Data written to: {key}"));
            0
        }
    }
}

// ---- get ------------------------------------------------------------------------------------

fn get_flags() -> Vec<Flag> {
    vec![
        Flag::bool(
            "base64",
            "Base64 encode the value. The default value is false.",
        ),
        Flag::bool(
            "detailed",
            "Provide additional metadata about the key in addition to the value such as the \
             ModifyIndex and any flags that may have been set on the key. The default value is \
             false.",
        ),
        Flag::bool(
            "keys",
            "List keys which start with the given prefix, but not their values. This is \
             especially useful if you only need the key names themselves. This option is \
             commonly combined with the -separator option. The default value is false.",
        ),
        Flag::bool(
            "recurse",
            "Recursively look at all keys prefixed with the given path. The default value is \
             false.",
        ),
        Flag::string(
            "separator",
            "string",
            "String to use as a separator between keys. The default value is \"/\", but this \
             option is only taken into account when paired with the -keys flag.",
        ),
    ]
}

fn one_key(p: &Parsed, ui: &mut Ui<'_>) -> Option<String> {
    match p.args.as_slice() {
        [] => Some(String::new()),
        [key] => Some(strip_slash(key)),
        more => {
            ui.error(&format!(
                "Too many arguments (expected 1, got {})",
                more.len()
            ));
            None
        }
    }
}

async fn get(p: &Parsed, ui: &mut Ui<'_>) -> u8 {
    let Some(key) = one_key(p, ui) else {
        return 1;
    };
    let (keys, recurse, detailed, b64) = (
        p.flag("keys"),
        p.flag("recurse"),
        p.flag("detailed"),
        p.flag("base64"),
    );
    if key.is_empty() && !(recurse || keys) {
        ui.error("Error! Missing KEY argument");
        return 1;
    }
    let Some((client, flags)) = connect(p, ui) else {
        return 1;
    };
    let opts = flags.query_options();
    if keys && recurse {
        let Some(pairs) = list_pairs(&client, &key, &opts, ui).await else {
            return 1;
        };
        for (i, pair) in pairs.iter().enumerate() {
            if detailed {
                ui.output_bytes(&pretty_kv_pair(pair, false, true));
                if i + 1 < pairs.len() {
                    ui.output("");
                }
            } else {
                ui.output(&pair.key);
            }
        }
        return 0;
    }
    if keys {
        let separator = p.string("separator").unwrap_or_else(|| "/".to_string());
        return match client.kv_keys(&key, Some(&separator), &opts).await {
            Ok((keys, _)) => {
                for k in keys {
                    ui.output(&k);
                }
                0
            }
            Err(e) => {
                ui.error(&format!("Error querying Consul agent: {e}"));
                1
            }
        };
    }
    if recurse {
        let Some(pairs) = list_pairs(&client, &key, &opts, ui).await else {
            return 1;
        };
        for (i, pair) in pairs.iter().enumerate() {
            if detailed {
                ui.output_bytes(&pretty_kv_pair(pair, b64, false));
                if i + 1 < pairs.len() {
                    ui.output("");
                }
            } else {
                ui.output_bytes(&recurse_line(pair, b64));
            }
        }
        return 0;
    }
    let pair = match client.kv_get(&key, &opts).await {
        Ok((Some(pair), _)) => pair,
        Ok((None, _)) => {
            ui.error(&format!("Error! No key exists at: {key}"));
            return 1;
        }
        Err(e) => {
            ui.error(&format!("Error querying Consul agent: {e}"));
            return 1;
        }
    };
    if detailed {
        ui.output_bytes(&pretty_kv_pair(&pair, b64, false));
    } else {
        ui.output_bytes(&value_bytes(&pair, b64));
    }
    0
}

fn value_bytes(pair: &KvPair, b64: bool) -> Vec<u8> {
    let raw = pair.value.as_deref().unwrap_or_default();
    if b64 {
        base64::engine::general_purpose::STANDARD
            .encode(raw)
            .into_bytes()
    } else {
        raw.to_vec()
    }
}

/// `kv get -recurse` line: `key:value` (value raw or base64).
pub fn recurse_line(pair: &KvPair, b64: bool) -> Vec<u8> {
    let mut line = pair.key.as_bytes().to_vec();
    line.push(b':');
    line.extend(value_bytes(pair, b64));
    line
}

/// `kv get -detailed`: Consul's `prettyKVPair`, a tabwriter table (min width 0, padding 6)
/// without a trailing newline after `Value` (the caller's line adds it). With `keys_only` the
/// `Value` row is left out (and the table ends with a newline, as Consul's does).
pub fn pretty_kv_pair(pair: &KvPair, b64: bool, keys_only: bool) -> Vec<u8> {
    let mut text: Vec<u8> = Vec::new();
    text.extend(format!("CreateIndex\t{}\n", pair.create_index).bytes());
    text.extend(format!("Flags\t{}\n", pair.flags).bytes());
    text.extend(b"Key\t");
    text.extend(pair.key.as_bytes());
    text.push(b'\n');
    text.extend(format!("LockIndex\t{}\n", pair.lock_index).bytes());
    text.extend(format!("ModifyIndex\t{}\n", pair.modify_index).bytes());
    match pair.session.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => text.extend(format!("Session\t{s}\n").bytes()),
        None => text.extend(b"Session\t-\n"),
    }
    if !keys_only {
        text.extend(b"Value\t");
        text.extend(value_bytes(pair, b64));
    }
    tabwrite(&text, 0, 6)
}

/// Go's `text/tabwriter` with padchar ' ' and no flags: cells are tab-terminated, a column block
/// is a run of consecutive lines with a cell in that column, and each cell of a block is padded
/// to the block's widest cell plus `padding`.
pub fn tabwrite(text: &[u8], minwidth: usize, padding: usize) -> Vec<u8> {
    struct Tw<'a> {
        lines: Vec<Vec<&'a [u8]>>,
        widths: Vec<usize>,
        out: Vec<u8>,
        minwidth: usize,
        padding: usize,
    }
    fn width(cell: &[u8]) -> usize {
        String::from_utf8_lossy(cell).chars().count()
    }
    impl Tw<'_> {
        fn write_lines(&mut self, line0: usize, line1: usize) {
            for i in line0..line1 {
                let line = &self.lines[i];
                for (j, cell) in line.iter().enumerate() {
                    self.out.extend_from_slice(cell);
                    if let Some(w) = self.widths.get(j) {
                        let pad = w.saturating_sub(width(cell));
                        self.out.extend(std::iter::repeat_n(b' ', pad));
                    }
                }
                if i + 1 < self.lines.len() {
                    self.out.push(b'\n');
                }
            }
        }

        fn format(&mut self, mut line0: usize, line1: usize) {
            let column = self.widths.len();
            let mut this = line0;
            while this < line1 {
                if column + 1 >= self.lines[this].len() {
                    this += 1;
                    continue;
                }
                self.write_lines(line0, this);
                line0 = this;
                let mut w = self.minwidth;
                while this < line1 {
                    let line = &self.lines[this];
                    if column + 1 >= line.len() {
                        break;
                    }
                    w = w.max(width(line[column]) + self.padding);
                    this += 1;
                }
                self.widths.push(w);
                self.format(line0, this);
                self.widths.pop();
                line0 = this;
            }
            self.write_lines(line0, line1);
        }
    }
    let lines: Vec<Vec<&[u8]>> = text
        .split(|b| *b == b'\n')
        .map(|line| line.split(|b| *b == b'\t').collect())
        .collect();
    let n = lines.len();
    let mut tw = Tw {
        lines,
        widths: Vec::new(),
        out: Vec::with_capacity(text.len() * 2),
        minwidth,
        padding,
    };
    tw.format(0, n);
    tw.out
}

// ---- delete ---------------------------------------------------------------------------------

fn delete_flags() -> Vec<Flag> {
    vec![
        Flag::bool(
            "cas",
            "Perform a Check-And-Set operation. Specifying this value also requires the \
             -modify-index flag to be set. The default value is false.",
        ),
        Flag::uint(
            "modify-index",
            "Unsigned integer representing the ModifyIndex of the key. This is used in \
             combination with the -cas flag.",
        ),
        Flag::bool(
            "recurse",
            "Recursively delete all keys with the path. The default value is false.",
        ),
    ]
}

async fn delete(p: &Parsed, ui: &mut Ui<'_>) -> u8 {
    let Some(key) = one_key(p, ui) else {
        return 1;
    };
    let (cas, recurse) = (p.flag("cas"), p.flag("recurse"));
    let modify_index = p.uint("modify-index").unwrap_or(0);
    if key.is_empty() && !recurse {
        ui.error("Error! Missing KEY argument");
        return 1;
    }
    if cas && modify_index == 0 {
        ui.error(
            "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.",
        );
        return 1;
    }
    if modify_index != 0 && !cas {
        ui.error("Cannot specify -modify-index without -cas!");
        return 1;
    }
    if recurse && cas {
        ui.error("Cannot specify both -cas and -recurse!");
        return 1;
    }
    let Some((client, _)) = connect(p, ui) else {
        return 1;
    };
    if recurse {
        return match client.kv_delete(&key, true, None).await {
            Ok(_) => {
                ui.output(&format!("Success! Deleted keys with prefix: {key}"));
                0
            }
            Err(e) => {
                ui.error(&format!("Error! Did not delete prefix {key}: {e}"));
                1
            }
        };
    }
    if cas {
        return report(
            ui,
            client.kv_delete(&key, false, Some(modify_index)).await,
            format!("Success! Deleted key: {key}"),
            format!("Error! Did not delete key {key}: CAS failed"),
            |e| format!("Error! Did not delete key {key}: {e}"),
        );
    }
    match client.kv_delete(&key, false, None).await {
        Ok(_) => {
            ui.output(&format!("Success! Deleted key: {key}"));
            0
        }
        Err(e) => {
            ui.error(&format!("Error deleting key {key}: {e}"));
            1
        }
    }
}

// ---- export / import ------------------------------------------------------------------------

async fn export(p: &Parsed, ui: &mut Ui<'_>) -> u8 {
    let Some(key) = one_key(p, ui) else {
        return 1;
    };
    let Some((client, flags)) = connect(p, ui) else {
        return 1;
    };
    match client.kv_list(&key, &flags.query_options()).await {
        Ok((pairs, _)) => {
            ui.output(&export_json(&pairs));
            0
        }
        Err(e) => {
            ui.error(&format!("Error querying Consul agent: {e}"));
            1
        }
    }
}

/// The export document: a JSON array of `{key, flags, value(base64)}` indented with tabs and
/// escaped as Go's `json.MarshalIndent` does (`<`, `>`, `&`, U+2028, U+2029 as `\uXXXX`), so
/// output is byte-identical to Consul's.
pub fn export_json(pairs: &[KvPair]) -> String {
    let entries: Vec<KvExportEntry> = pairs
        .iter()
        .map(|p| KvExportEntry {
            key: p.key.clone(),
            flags: p.flags,
            value: base64::engine::general_purpose::STANDARD
                .encode(p.value.as_deref().unwrap_or_default()),
        })
        .collect();
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    if entries.serialize(&mut ser).is_err() {
        return "[]".to_string();
    }
    go_html_escape(&String::from_utf8_lossy(&buf))
}

/// Go's JSON encoder escapes these even outside HTML; they only occur inside strings.
fn go_html_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// An entry of an import document. Go's decoder matches field names case-insensitively and
/// reads `null` as the zero value, so this accepts the usual spellings and nulls.
#[derive(Debug, Default, Deserialize)]
struct ImportEntry {
    #[serde(default, alias = "Key", alias = "KEY")]
    key: Option<String>,
    #[serde(default, alias = "Flags", alias = "FLAGS")]
    flags: Option<u64>,
    #[serde(default, alias = "Value", alias = "VALUE")]
    value: Option<String>,
}

/// One key to write on import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportItem {
    pub key: String,
    pub flags: u64,
    pub value: Vec<u8>,
}

/// Parses an import document. `Err` carries Consul's message (without the key prefix).
pub fn parse_import(data: &[u8], prefix: &str) -> Result<Vec<ImportItem>, String> {
    let entries: Option<Vec<Option<ImportEntry>>> =
        serde_json::from_slice(data).map_err(|e| format!("Cannot unmarshal data: {e}"))?;
    let mut items = Vec::new();
    for entry in entries.unwrap_or_default().into_iter().flatten() {
        let key = entry.key.unwrap_or_default();
        let value = decode_base64(entry.value.unwrap_or_default().as_bytes())
            .map_err(|e| format!("Error base 64 decoding value for key {key}: {e}"))?;
        let mut full = go_path_join(prefix, &key);
        // "if the key is a directory, we need to append /"
        if key.ends_with('/') {
            full.push('/');
        }
        items.push(ImportItem {
            key: full,
            flags: entry.flags.unwrap_or(0),
            value,
        });
    }
    Ok(items)
}

/// Go's `path.Join(a, b)`: empty elements ignored, the result cleaned (`""` if both are empty).
pub fn go_path_join(a: &str, b: &str) -> String {
    let joined = match (a.is_empty(), b.is_empty()) {
        (true, true) => return String::new(),
        (true, false) => b.to_string(),
        (false, true) => a.to_string(),
        (false, false) => format!("{a}/{b}"),
    };
    go_path_clean(&joined)
}

/// Go's `path.Clean`.
pub fn go_path_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

async fn import(p: &Parsed, ui: &mut Ui<'_>) -> u8 {
    let data = match p.args.as_slice() {
        [] => Err("Missing DATA argument".to_string()),
        [data] if data.is_empty() => Err("Empty DATA argument".to_string()),
        [data] => load_data_source(data, ui),
        more => Err(format!(
            "Too many arguments (expected 1, got {})",
            more.len()
        )),
    };
    let data = match data {
        Ok(d) => d,
        Err(e) => {
            ui.error(&format!("Error! {e}"));
            return 1;
        }
    };
    let Some((client, _)) = connect(p, ui) else {
        return 1;
    };
    let prefix = p.string("prefix").unwrap_or_default();
    let items = match parse_import(&data, &prefix) {
        Ok(items) => items,
        Err(e) => {
            ui.error(&e);
            return 1;
        }
    };
    for item in items {
        let opts = KvWriteOptions {
            flags: Some(item.flags).filter(|f| *f != 0),
            ..Default::default()
        };
        if let Err(e) = client.kv_put_with(&item.key, &item.value, &opts).await {
            ui.error(&format!(
                "Error! Failed writing data for key {}: {e}",
                item.key
            ));
            return 1;
        }
        ui.output(&format!("Imported: {}", item.key));
    }
    0
}

// ---- help texts -----------------------------------------------------------------------------

const KV_HELP: &str = r#"
Usage: muster kv <subcommand> [options] [args]

  This command has subcommands for interacting with the key-value
  store. Here are some simple examples, and more detailed examples are
  available in the subcommands or the documentation.

  Create or update the key named "redis/config/connections" with the value "5":

      $ muster kv put redis/config/connections 5

  Read this value back:

      $ muster kv get redis/config/connections

  Or get detailed key information:

      $ muster kv get -detailed redis/config/connections

  Finally, delete the key:

      $ muster kv delete redis/config/connections

  For more examples, ask for subcommand help or view the documentation.
"#;

const PUT_HELP: &str = r#"
Usage: muster kv put [options] KEY [DATA]

  Writes the data to the given path in the key-value store. The data can be of
  any type.

      $ muster kv put config/redis/maxconns 5

  The data can also be consumed from a file on disk by prefixing with the "@"
  symbol. For example:

      $ muster kv put config/program/license @license.lic

  Or it can be read from stdin using the "-" symbol:

      $ echo "abcd1234" | muster kv put config/program/license -

  The DATA argument itself is optional. If omitted, this will create an empty
  key-value pair at the specified path:

      $ muster kv put webapp/beta/active

  If the -base64 flag is specified, the data will be treated as base 64
  encoded.

  To perform a Check-And-Set operation, specify the -cas flag with the
  appropriate -modify-index flag corresponding to the key you want to perform
  the CAS operation on:

      $ muster kv put -cas -modify-index=844 config/redis/maxconns 5

  Additional flags and more advanced use cases are detailed below.
"#;

const GET_HELP: &str = r#"
Usage: muster kv get [options] [KEY_OR_PREFIX]

  Retrieves the value from the key-value store at the given key name. If no
  key exists with that name, an error is returned. If a key exists with that
  name but has no data, nothing is returned. If the name or prefix is omitted,
  it defaults to "" which is the root of the key-value store.

  To retrieve the value for the key named "foo" in the key-value store:

      $ muster kv get foo

  This will return the original, raw value stored. To view detailed
  information about the key, specify the "-detailed" flag. This will output all
  known metadata about the key including ModifyIndex and any user-supplied
  flags:

      $ muster kv get -detailed foo

  To treat the path as a prefix and list all keys which start with the given
  prefix, specify the "-recurse" flag:

      $ muster kv get -recurse foo

  This will return all key-value pairs. To just list the keys which start with
  the specified prefix, use the "-keys" option instead:

      $ muster kv get -keys foo

  For a full list of options and examples, please see the documentation.
"#;

const DELETE_HELP: &str = r#"
Usage: muster kv delete [options] KEY_OR_PREFIX

  Removes the value from the key-value store at the given path. If no
  key exists at the path, no action is taken.

  To delete the value for the key named "foo" in the key-value store:

      $ muster kv delete foo

  To delete all keys which start with "foo", specify the -recurse option:

      $ muster kv delete -recurse foo

  This will delete the keys named "foo", "food", and "foo/bar/zip" if they
  existed.
"#;

const EXPORT_HELP: &str = r#"
Usage: muster kv export [KEY_OR_PREFIX]

  Retrieves key-value pairs for the given prefix from the key-value store,
  and writes a JSON representation to stdout. This can be used with the command
  "muster kv import" to move entire trees between clusters.

      $ muster kv export vault

  For a full list of options and examples, please see the documentation.
"#;

const IMPORT_HELP: &str = r#"
Usage: muster kv import [DATA]

  Imports key-value pairs to the key-value store from the JSON representation
  generated by the "muster kv export" command.

  The data can be read from a file by prefixing the filename with the "@"
  symbol. For example:

      $ muster kv import @filename.json

  Or it can be read from stdin using the "-" symbol:

      $ cat filename.json | muster kv import -

  Alternatively the data may be provided as the final parameter to the command,
  though care must be taken with regards to shell escaping.

  For a full list of options and examples, please see the documentation.
"#;

/// Reports a write the agent answered `true`/`false` (or failed): the success line on stdout
/// and exit 0, else the refusal or the failure on stderr and exit 1.
fn report(
    ui: &mut Ui<'_>,
    result: Result<bool, muster_api::Error>,
    success: String,
    refused: String,
    failed: impl FnOnce(&muster_api::Error) -> String,
) -> u8 {
    match result {
        Ok(true) => {
            ui.output(&success);
            0
        }
        Ok(false) => {
            ui.error(&refused);
            1
        }
        Err(e) => {
            ui.error(&failed(&e));
            1
        }
    }
}

/// `kv_list`, with a failure reported the way `kv get` reports it.
async fn list_pairs(
    client: &muster_api::Client,
    key: &str,
    opts: &muster_api::QueryOptions,
    ui: &mut Ui<'_>,
) -> Option<Vec<muster_api::KvPair>> {
    match client.kv_list(key, opts).await {
        Ok((pairs, _)) => Some(pairs),
        Err(e) => {
            ui.error(&format!("Error querying Consul agent: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    fn pair(key: &str, value: &[u8]) -> KvPair {
        KvPair {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.to_vec()),
            create_index: 13,
            modify_index: 15,
            flags: 42,
            ..Default::default()
        }
    }

    #[test]
    fn detailed_table() {
        let text = pretty_kv_pair(&pair("foo", b"bar"), false, false);
        assert_eq!(
            String::from_utf8_lossy(&text),
            "CreateIndex      13\n\
             Flags            42\n\
             Key              foo\n\
             LockIndex        0\n\
             ModifyIndex      15\n\
             Session          -\n\
             Value            bar"
        );
        let mut locked = pair("foo", b"bar");
        locked.session = Some("adf4238a-882b-9ddc-4a9d-5b6758e4159e".into());
        let text = String::from_utf8_lossy(&pretty_kv_pair(&locked, true, false)).into_owned();
        assert!(text.contains("\nSession          adf4238a-882b-9ddc-4a9d-5b6758e4159e\n"));
        assert!(text.ends_with("\nValue            YmFy"));
        let keys_only = String::from_utf8_lossy(&pretty_kv_pair(&locked, false, true)).into_owned();
        assert!(keys_only.ends_with("4159e\n"), "{keys_only:?}");
        assert!(!keys_only.contains("Value"));
    }

    #[test]
    fn tabwriter_like_go() {
        // A tab inside the last cell starts a block of its own in the next column.
        assert_eq!(
            tabwrite(b"a\tb\tc\nlonger\td", 0, 2),
            b"a       b  c\nlonger  d"
        );
        // A line without tabs ends the block above it.
        assert_eq!(
            tabwrite(b"a\tb\nplain\nlong\tc", 0, 1),
            b"a b\nplain\nlong c"
        );
        assert_eq!(tabwrite(b"x\t\n", 0, 6), b"x      \n");
    }

    #[test]
    fn recurse_lines() {
        assert_eq!(recurse_line(&pair("a/b", b"v"), false), b"a/b:v");
        assert_eq!(recurse_line(&pair("a/", b""), false), b"a/:");
        assert_eq!(recurse_line(&pair("k", b"bar"), true), b"k:YmFy");
    }

    #[test]
    fn export_like_consul() {
        let pairs = vec![pair("foo", b"bar"), pair("dir/", b""), pair("a<b>&", b"x")];
        assert_eq!(
            export_json(&pairs),
            "[\n\t{\n\t\t\"key\": \"foo\",\n\t\t\"flags\": 42,\n\t\t\"value\": \"YmFy\"\n\t},\n\
             \t{\n\t\t\"key\": \"dir/\",\n\t\t\"flags\": 42,\n\t\t\"value\": \"\"\n\t},\n\
             \t{\n\t\t\"key\": \"a\\u003cb\\u003e\\u0026\",\n\t\t\"flags\": 42,\n\t\t\"value\": \"eA==\"\n\t}\n]"
        );
        assert_eq!(export_json(&[]), "[]");
    }

    #[test]
    fn import_round_trip() {
        let pairs = vec![
            pair("foo", b"bar"),
            pair("dir/", b""),
            pair("a<b>", b"\x00\xff"),
        ];
        let items = parse_import(export_json(&pairs).as_bytes(), "").expect("import");
        assert_eq!(
            items,
            vec![
                ImportItem {
                    key: "foo".into(),
                    flags: 42,
                    value: b"bar".to_vec()
                },
                ImportItem {
                    key: "dir/".into(),
                    flags: 42,
                    value: Vec::new()
                },
                ImportItem {
                    key: "a<b>".into(),
                    flags: 42,
                    value: b"\x00\xff".to_vec()
                },
            ]
        );
    }

    #[test]
    fn import_prefix_and_leniency() {
        let doc = br#"[{"Key":"x//y","Flags":null,"value":"YQ=="},null,{"key":"d/"}]"#;
        let items = parse_import(doc, "pre/").expect("import");
        assert_eq!(items[0].key, "pre/x/y");
        assert_eq!(items[0].flags, 0);
        assert_eq!(items[0].value, b"a");
        assert_eq!(items[1].key, "pre/d/");
        assert_eq!(parse_import(b"null", "").expect("null"), Vec::new());
        let bad = parse_import(br#"[{"key":"k","value":"!!"}]"#, "").expect_err("bad");
        assert!(
            bad.starts_with("Error base 64 decoding value for key k: "),
            "{bad}"
        );
        let bad = parse_import(b"{", "").expect_err("bad json");
        assert!(bad.starts_with("Cannot unmarshal data: "), "{bad}");
    }

    #[test]
    fn path_join_like_go() {
        assert_eq!(go_path_join("", ""), "");
        assert_eq!(go_path_join("", "a/b/"), "a/b");
        assert_eq!(go_path_join("p", "a"), "p/a");
        assert_eq!(go_path_join("p/", "/a//b/./c/.."), "p/a/b");
        assert_eq!(go_path_join("", "../a"), "../a");
        assert_eq!(go_path_join("/", "../a"), "/a");
        assert_eq!(go_path_join("", "."), ".");
    }

    #[test]
    fn base64_like_go() {
        assert_eq!(decode_base64(b"aGVsbG8=\n").expect("ok"), b"hello");
        assert!(decode_base64(b"aGVsbG8").is_err());
    }

    async fn run_kv(sub: &str, a: &[&str], stdin: &[u8]) -> (u8, String, String) {
        let mut c = Captured::with_stdin(stdin);
        // An address nothing listens on: only pre-network paths can succeed.
        let mut full = args(&["-http-addr=127.0.0.1:1"]);
        full.extend(args(a));
        let code = run(sub, full, &mut c.ui()).await;
        (code, c.out(), c.err())
    }

    #[tokio::test]
    async fn usage_errors_before_the_network() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("put", &[], "Error! Missing KEY argument\n"),
            (
                "put",
                &["a", "b", "c"],
                "Error! Too many arguments (expected 1 or 2, got 3)\n",
            ),
            (
                "put",
                &["-acquire", "k"],
                "Error! Missing -session (required with -acquire and -release)\n",
            ),
            (
                "put",
                &["-base64", "k", "!!"],
                "Error! Cannot base 64 decode data: ",
            ),
            (
                "put",
                &["k", "@/nonexistent/file"],
                "Error! Failed to read file: open /nonexistent/file: no such file or directory\n",
            ),
            ("get", &[], "Error! Missing KEY argument\n"),
            ("get", &["/"], "Error! Missing KEY argument\n"),
            ("get", &["a", "b"], "Too many arguments (expected 1, got 2)\n"),
            ("delete", &[], "Error! Missing KEY argument\n"),
            (
                "delete",
                &["-cas", "k"],
                "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.\n",
            ),
            (
                "delete",
                &["-modify-index=3", "k"],
                "Cannot specify -modify-index without -cas!\n",
            ),
            (
                "delete",
                &["-recurse", "-cas", "-modify-index=3", "k"],
                "Cannot specify both -cas and -recurse!\n",
            ),
            ("export", &["a", "b"], "Too many arguments (expected 1, got 2)\n"),
            ("import", &[], "Error! Missing DATA argument\n"),
            ("import", &[""], "Error! Empty DATA argument\n"),
            (
                "import",
                &["a", "b"],
                "Error! Too many arguments (expected 1, got 2)\n",
            ),
        ];
        for (sub, a, want) in cases {
            let (code, out, err) = run_kv(sub, a, b"").await;
            assert_eq!(code, 1, "kv {sub} {a:?}");
            assert!(out.is_empty(), "kv {sub} {a:?}: {out}");
            assert!(err.starts_with(want), "kv {sub} {a:?}: {err:?}");
        }
    }

    #[tokio::test]
    async fn import_rejects_bad_json_from_stdin() {
        let (code, out, err) = run_kv("import", &["-"], b"not json").await;
        assert_eq!(code, 1);
        assert!(out.is_empty());
        assert!(err.starts_with("Cannot unmarshal data: "), "{err}");
    }

    #[tokio::test]
    async fn unreachable_agent() {
        let (code, out, err) = run_kv("get", &["foo"], b"").await;
        assert_eq!(code, 1);
        assert!(out.is_empty());
        assert!(
            err.starts_with("Error querying Consul agent: Get \"http://127.0.0.1:1/v1/kv/foo\": "),
            "{err}"
        );
        let (code, _, err) = run_kv("put", &["foo", "bar"], b"").await;
        assert_eq!(code, 1);
        assert!(
            err.starts_with("Error! Failed writing data: Put \"http://127.0.0.1:1/v1/kv/foo\": "),
            "{err}"
        );
        let (code, _, err) = run_kv("put", &["/foo", "bar"], b"").await;
        assert_eq!(code, 1);
        assert_eq!(
            err,
            "Error! Failed writing data: Invalid key. Key must not begin with a '/': /foo\n"
        );
    }

    #[tokio::test]
    async fn bad_address() {
        let mut c = Captured::default();
        let code = run("get", args(&["-http-addr=ftp://x:1", "foo"]), &mut c.ui()).await;
        assert_eq!(code, 1);
        assert!(
            c.err().starts_with("Error connecting to Consul agent: "),
            "{}",
            c.err()
        );
    }

    #[tokio::test]
    async fn unknown_flag_prints_usage() {
        let (code, out, err) = run_kv("get", &["-nope", "k"], b"").await;
        assert_eq!(code, 1);
        assert!(out.is_empty());
        assert!(err.starts_with("flag provided but not defined: -nope\nUsage: muster kv get"));
    }
}

//! The built-in projection formats (SPEC §8) read back by the formats' own readers: every hostile
//! value comes back byte for byte from python-dotenv and `set -a; . FILE` under dash and bash
//! (dotenv), jq (json), Java's `Properties.load(InputStream)` (properties) and PyYAML (yaml), and
//! dotenv refuses exactly the values no dotenv text carries for both of its readers. No mount:
//! the renderer is called directly. python-dotenv and PyYAML come from `.venv`
//! (`scripts/python-venv`); dash, jq and java from `scripts/install-deps`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use akvfs::projection::formats::{dotenv_quote, render, Format, FormatEntry};

/// Values that break naive quoting.
const HOSTILE: &[&str] = &[
    "plain",
    "",
    "  leading and trailing  ",
    "multi\nline\nvalue\n",
    "\n",
    "double \" quote",
    "it's",
    "'",
    "\"",
    "'single quoted'",
    "hash # not a comment",
    "#",
    "a=b=c",
    "=",
    ": colon",
    "!bang",
    "$HOME and $1 and $",
    "price: 5$",
    "}{",
    "a${ without a closing brace",
    "}${",
    "non-ASCII \u{e9}\u{fc} \u{65e5}\u{672c} \u{1f600}",
    "back\\slash",
    "a\\nb",
    "double\\\\backslash",
    "tab\there",
    "semi;colon && rm -rf / | cat",
    "`echo hi`",
    "$(echo hi)",
    "\\\"",
    "it's \\ a \" mix",
    "a trailing backslash \\",
    "two trailing \\\\",
    "'\\",
    "control \u{1}\u{7f}\u{85}\u{2028}",
    "export X=1",
    " ",
    "yes",
    "null",
    "~",
    "0o17",
    "1e3",
    "2001-12-14",
    "- item",
    "&anchor *alias !!tag",
    "\u{feff}bom",
];

/// Values no dotenv text carries for both python-dotenv and sh.
const DOTENV_REFUSED: &[&str] = &[
    "${HOME}",
    "x${a:-b}y",
    "${}",
    "it's $5",
    "it's `x`",
    "back\\\\slash and $x",
    "a trailing backslash and $x \\",
    "cr\r\nlf",
    "nul\0",
];

fn entries<'a>(keys: &'a [String], values: &[&'a str]) -> Vec<FormatEntry<'a>> {
    keys.iter()
        .zip(values)
        .map(|(k, v)| FormatEntry {
            secret: k,
            key: k,
            value: v,
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run reader");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Parses a reader's JSON object of strings.
fn object(json: &[u8]) -> BTreeMap<String, String> {
    serde_json::from_slice(json).expect("reader printed a JSON object of strings")
}

fn expected(keys: &[String], values: &[&str]) -> BTreeMap<String, String> {
    keys.iter()
        .cloned()
        .zip(values.iter().map(|v| v.to_string()))
        .collect()
}

/// The repository's venv python, or `None` (skip) outside `scripts/test`.
fn venv_python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ok = python.exists()
        && Command::new(&python)
            .args(["-c", "import dotenv, yaml"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("AKVFS_REQUIRE_PYTHON_SDK").is_none(),
            "no .venv with python-dotenv and PyYAML: run scripts/python-venv"
        );
        eprintln!("skipping the python readers: run scripts/python-venv");
        return None;
    }
    Some(python)
}

#[test]
fn dotenv_is_read_back_exactly_by_python_dotenv_dash_and_bash() {
    let values: Vec<&str> = HOSTILE.to_vec();
    let keys: Vec<String> = (0..values.len()).map(|i| format!("K_{i}")).collect();
    let text = render(Format::Dotenv, &entries(&keys, &values)).expect("every hostile value fits");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), ".env", &text);
    let want = expected(&keys, &values);

    for shell in ["dash", "bash"] {
        // Each variable NUL-terminated, read from the environment of a child (so `set -a`
        // exported it) and from the shell itself.
        let script = format!(
            "set -a; . \"$1\"; for k in {}; do eval \"printf '%s\\0' \\\"\\${{$k}}\\\"\"; done; env -0",
            keys.join(" ")
        );
        let out = run(Command::new(shell)
            .env_clear()
            .arg("-c")
            .arg(&script)
            .arg(shell)
            .arg(&file));
        let mut fields = out.split(|&b| b == 0);
        let mut env = BTreeMap::new();
        for k in &keys {
            let got = String::from_utf8(fields.next().expect("field").to_vec()).expect("utf-8");
            assert_eq!(Some(&got), want.get(k), "{shell}: {k}");
        }
        for field in fields {
            let field = String::from_utf8_lossy(field);
            if let Some((k, v)) = field.split_once('=') {
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        for k in &keys {
            assert_eq!(env.get(k), want.get(k), "{shell}: {k} exported");
        }
    }

    let Some(python) = venv_python() else {
        return;
    };
    let got = object(&run(Command::new(python)
        .arg("-c")
        .arg("import sys, json, dotenv; print(json.dumps(dotenv.dotenv_values(sys.argv[1])))")
        .arg(&file)));
    assert_eq!(got, want, "python-dotenv");
    // load_dotenv (the usual entry point) interpolates too; the environment must agree.
    let got = object(&run(Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    )
    .env_clear()
    .arg("-c")
    .arg(
        "import sys, os, json, dotenv; dotenv.load_dotenv(sys.argv[1]); \
         print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('K_')}))",
    )
    .arg(&file)));
    assert_eq!(got, want, "python-dotenv load_dotenv");
}

#[test]
fn dotenv_refuses_what_one_reader_would_misread() {
    for v in DOTENV_REFUSED {
        assert!(dotenv_quote(v).is_err(), "{v:?} accepted");
        let e = [FormatEntry {
            secret: "the-secret",
            key: "K",
            value: v,
        }];
        let err = render(Format::Dotenv, &e).expect_err("refused");
        let said = err.to_string();
        assert!(said.contains("the-secret"), "{said}");
        assert!(v.is_empty() || !said.contains(v), "{said}");
    }
    for v in HOSTILE {
        assert!(dotenv_quote(v).is_ok(), "{v:?} refused");
    }
}

/// Keys as hostile as the values, for the formats whose keys are strings.
fn hostile_keys(n: usize) -> Vec<String> {
    let odd = [
        "spring.datasource.password",
        "ConnectionStrings__Db",
        "with space",
        "a:b=c#d!e",
        " lead",
        "cl\u{e9}",
        "q\"uote",
        "back\\slash",
        "<<",
        "null",
        "#comment",
        "!bang",
        "123",
    ];
    (0..n)
        .map(|i| match odd.get(i) {
            Some(k) => (*k).to_owned(),
            None => format!("k{i}"),
        })
        .collect()
}

fn all_values() -> Vec<&'static str> {
    let mut v: Vec<&str> = HOSTILE.to_vec();
    v.extend_from_slice(DOTENV_REFUSED);
    v
}

#[test]
fn json_is_read_back_exactly_by_jq() {
    let values = all_values();
    let keys = hostile_keys(values.len());
    let text = render(Format::Json, &entries(&keys, &values)).expect("render");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "app.json", &text);
    let got = object(&run(Command::new("jq").arg("-c").arg(".").arg(&file)));
    assert_eq!(got, expected(&keys, &values));
    // And jq's own string output, not only its JSON: the raw bytes of one value.
    let raw = run(Command::new("jq")
        .arg("-j")
        .arg(".[\"cl\u{e9}\"]")
        .arg(&file));
    assert_eq!(raw, values[5].as_bytes());
}

#[test]
fn yaml_is_read_back_exactly_by_pyyaml() {
    let Some(python) = venv_python() else {
        return;
    };
    let values = all_values();
    let keys = hostile_keys(values.len());
    let text = render(Format::Yaml, &entries(&keys, &values)).expect("render");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "app.yaml", &text);
    let got = object(&run(Command::new(python).arg("-c").arg(
        "import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1], encoding='utf-8'))))",
    )
    .arg(&file)));
    assert_eq!(got, expected(&keys, &values));
}

/// Prints a `Properties.load(InputStream)` of the file as one JSON object of strings.
const PROPS_JAVA: &str = r#"
import java.io.FileInputStream;
import java.util.Properties;
import java.util.TreeMap;

public class Props {
    static String q(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20 || c > 0x7e) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) { p.load(in); }
        StringBuilder out = new StringBuilder("{");
        for (var e : new TreeMap<>(p).entrySet()) {
            if (out.length() > 1) out.append(',');
            out.append(q((String) e.getKey())).append(':').append(q((String) e.getValue()));
        }
        System.out.print(out.append('}'));
    }
}
"#;

#[test]
fn properties_are_read_back_exactly_by_java_properties_load() {
    let values = all_values();
    let keys = hostile_keys(values.len());
    let text = render(Format::Properties, &entries(&keys, &values)).expect("render");
    assert!(text.is_ascii(), "ISO-8859-1 with \\u escapes only");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "app.properties", &text);
    let source = write(dir.path(), "Props.java", PROPS_JAVA);
    let got = object(&run(Command::new("java").arg(&source).arg(&file)));
    assert_eq!(got, expected(&keys, &values));
}

/// The refusals are needed: each refused value, in either quoting the renderer knows, is misread
/// by python-dotenv or by dash.
#[test]
fn each_refused_dotenv_value_is_misread_by_one_reader_in_either_quoting() {
    let Some(python) = venv_python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    let mut wanted = Vec::new();
    for (i, v) in DOTENV_REFUSED.iter().enumerate() {
        if v.contains('\0') {
            continue; // no file hands NUL to a shell variable at all
        }
        let double: String = v
            .chars()
            .flat_map(|c| {
                let escape = (c == '\\' || c == '"').then_some('\\');
                escape.into_iter().chain([c])
            })
            .collect();
        for (q, text) in [
            ("single", format!("'{v}'")),
            ("double", format!("\"{double}\"")),
        ] {
            files.push(write(
                dir.path(),
                &format!("{i}-{q}.env"),
                &format!("K={text}\nL='after'\n"),
            ));
            wanted.push(*v);
        }
    }
    let got = run(Command::new(python)
        .arg("-c")
        .arg(
            "import sys, json, dotenv; \
             print(json.dumps([dotenv.dotenv_values(f).get('K') for f in sys.argv[1:]]))",
        )
        .args(&files));
    let by_python: Vec<Option<String>> = serde_json::from_slice(&got).expect("json list");
    for ((file, want), py) in files.iter().zip(&wanted).zip(by_python) {
        let out = Command::new("dash")
            .arg("-c")
            .arg("set -a; . \"$1\" && printf %s \"$K\"")
            .arg("dash")
            .arg(file)
            .output()
            .expect("dash");
        let by_dash = out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned());
        assert!(
            py.as_deref() != Some(*want) || by_dash.as_deref() != Some(*want),
            "{} is read back by both readers: {want:?} need not be refused",
            file.display()
        );
    }
}

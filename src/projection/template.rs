//! Templates (`template = …` / `template_file = …`, SPEC §8): Jinja through minijinja, with
//! `secret(name)` and `secret(name, version)`, the filters `tojson`, `shell_quote`,
//! `dotenv_quote`, `b64encode`, `b64decode`, strict undefined values, and the template's trailing
//! newline kept. A missing, disabled or forbidden secret fails the render with an error naming the
//! secret (`error_on_missing`, always on). A render records which secrets (and versions) it read,
//! so the caller re-renders only when one of them changes.
//!
//! Errors never carry values: a render error names the secret or the template line and the kind
//! of failure, never minijinja's detail text (which may quote a value, as in
//! `{% include secret('x') %}`).
//! Values pass through minijinja's own `Value` strings, which are not zeroed on drop; the rendered
//! text is returned in a [`Zeroizing`] string.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, Value};
use zeroize::Zeroizing;

use super::formats::dotenv_quote;

/// Why a secret could not be read for a template. Carries no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// No such secret (or version).
    #[error("not found")]
    NotFound,
    /// The secret (or version) is disabled.
    #[error("disabled")]
    Disabled,
    /// The credential may not read it.
    #[error("forbidden")]
    Forbidden,
    /// [`Prefetched`] does not hold it: the async caller fetches it and renders again.
    #[error("not fetched yet")]
    NotFetched,
    /// Anything else (transport, throttling…): a description without the value.
    #[error("{0}")]
    Other(String),
}

/// Where templates get secrets. Synchronous: the caller pre-fetches or blocks.
pub trait SecretSource {
    /// The value of `name` (its current version when `version` is `None`).
    fn get(&self, name: &str, version: Option<&str>) -> Result<Zeroizing<String>, SourceError>;
}

/// Secrets read beforehand, for a caller that cannot block in a render (the filesystem is async):
/// fill it with the inputs of the previous render, render, and when the render fails with
/// [`SourceError::NotFetched`] for a secret, fetch that one, insert it and render again.
#[derive(Default)]
pub struct Prefetched {
    values: std::collections::HashMap<SecretInput, Result<Zeroizing<String>, SourceError>>,
}

impl Prefetched {
    /// Records what reading `input` gave (a value, or why there is none).
    pub fn insert(&mut self, input: SecretInput, value: Result<Zeroizing<String>, SourceError>) {
        self.values.insert(input, value);
    }
}

impl fmt::Debug for Prefetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl SecretSource for Prefetched {
    fn get(&self, name: &str, version: Option<&str>) -> Result<Zeroizing<String>, SourceError> {
        let input = SecretInput {
            name: name.to_owned(),
            version: version.map(str::to_owned),
        };
        self.values
            .get(&input)
            .cloned()
            .unwrap_or(Err(SourceError::NotFetched))
    }
}

/// One secret (and version) a render read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretInput {
    /// The secret's name as the template spelled it.
    pub name: String,
    /// The version asked for; `None` = the current one.
    pub version: Option<String>,
}

impl fmt::Display for SecretInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{} (version {v})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A rendered template and what it read.
pub struct Rendered {
    /// The file's contents.
    pub text: Zeroizing<String>,
    /// Every secret the render read, successfully.
    pub inputs: BTreeSet<SecretInput>,
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("len", &self.text.len())
            .field("inputs", &self.inputs)
            .finish()
    }
}

/// A template that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct TemplateSyntaxError {
    /// 1-based line in the template's own text.
    pub line: usize,
    /// minijinja's description (of the template text, which holds no secret value).
    pub reason: String,
}

/// A render that failed; names a secret or a template line, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `secret(…)` could not read a secret.
    #[error("secret {input}: {cause}")]
    Secret {
        input: SecretInput,
        cause: SourceError,
    },
    /// Anything else the template did wrong (undefined variable, bad filter input…).
    #[error("template line {}: {kind}", line.map_or_else(|| "?".to_owned(), |l| l.to_string()))]
    Template { line: Option<usize>, kind: String },
}

const NAME: &str = "template";

/// A compiled template.
#[derive(Clone)]
pub struct Template {
    env: Arc<Environment<'static>>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template").finish_non_exhaustive()
    }
}

fn filter_error(what: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, what.to_owned())
}

fn base_environment() -> Environment<'static> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build();
    if let Ok(syntax) = syntax {
        env.set_syntax(syntax);
    }
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.add_filter("tojson", |v: Value| {
        serde_json::to_string(&v).map_err(|_| filter_error("tojson: not representable as JSON"))
    });
    env.add_filter("shell_quote", |s: &str| shell_quote(s));
    env.add_filter("dotenv_quote", |s: &str| {
        dotenv_quote(s).map_err(|_| filter_error("dotenv_quote: no dotenv text carries this value"))
    });
    env.add_filter("b64encode", |s: &str| {
        base64::engine::general_purpose::STANDARD.encode(s)
    });
    env.add_filter("b64decode", |s: &str| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| filter_error("b64decode: not base64"))?;
        String::from_utf8(bytes).map_err(|_| filter_error("b64decode: not UTF-8"))
    });
    env
}

/// POSIX single-quoting: the value between `'…'`, each `'` as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// What `secret(…)` reads through during one render.
struct Fetch {
    source: Arc<dyn SecretSource + Send + Sync>,
    inputs: Mutex<BTreeSet<SecretInput>>,
    failure: Mutex<Option<(SecretInput, SourceError)>>,
}

impl Fetch {
    fn get(&self, name: &str, version: Option<&str>) -> Result<Value, Error> {
        let input = SecretInput {
            name: name.to_owned(),
            version: version.map(str::to_owned),
        };
        match self.source.get(name, version) {
            Ok(value) => {
                if let Ok(mut inputs) = self.inputs.lock() {
                    inputs.insert(input);
                }
                Ok(Value::from(value.as_str()))
            }
            Err(cause) => {
                if let Ok(mut failure) = self.failure.lock() {
                    failure.get_or_insert((input, cause));
                }
                Err(Error::new(ErrorKind::InvalidOperation, "secret unreadable"))
            }
        }
    }
}

impl Template {
    /// Compiles `source`; a syntax error names the template line.
    pub fn compile(source: &str) -> Result<Template, TemplateSyntaxError> {
        let mut env = base_environment();
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| TemplateSyntaxError {
                line: e.line().unwrap_or(1),
                reason: e
                    .detail()
                    .map_or_else(|| e.kind().to_string(), str::to_owned),
            })?;
        Ok(Template { env: Arc::new(env) })
    }

    /// Renders, reading secrets from `source`.
    pub fn render(
        &self,
        source: Arc<dyn SecretSource + Send + Sync>,
    ) -> Result<Rendered, RenderError> {
        let fetch = Arc::new(Fetch {
            source,
            inputs: Mutex::new(BTreeSet::new()),
            failure: Mutex::new(None),
        });
        let mut env = (*self.env).clone();
        let f = Arc::clone(&fetch);
        env.add_function("secret", move |name: &str, version: Option<&str>| {
            f.get(name, version)
        });
        let result = env
            .get_template(NAME)
            .and_then(|t| t.render(minijinja::context! {}));
        // The closure holding the other reference goes with the environment.
        drop(env);
        let failure = fetch.failure.lock().ok().and_then(|mut f| f.take());
        match result {
            Ok(text) => Ok(Rendered {
                text: Zeroizing::new(text),
                inputs: fetch
                    .inputs
                    .lock()
                    .map(|mut i| std::mem::take(&mut *i))
                    .unwrap_or_default(),
            }),
            Err(e) => Err(match failure {
                Some((input, cause)) => RenderError::Secret { input, cause },
                None => RenderError::Template {
                    line: e.line(),
                    kind: e.kind().to_string(),
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, version: Option<&str>) -> SecretInput {
        SecretInput {
            name: name.to_owned(),
            version: version.map(str::to_owned),
        }
    }

    /// Builds a [`Prefetched`]; a secret it does not hold reads as not found.
    #[derive(Default)]
    struct Memory(Prefetched);

    impl Memory {
        fn with(mut self, name: &str, version: Option<&str>, value: &str) -> Self {
            self.0
                .insert(input(name, version), Ok(Zeroizing::new(value.to_owned())));
            self
        }
        fn failing(mut self, name: &str, e: SourceError) -> Self {
            self.0.insert(input(name, None), Err(e));
            self
        }
        fn arc(self) -> Arc<dyn SecretSource + Send + Sync> {
            Arc::new(NotFoundElse(self.0))
        }
    }

    struct NotFoundElse(Prefetched);

    impl SecretSource for NotFoundElse {
        fn get(&self, name: &str, version: Option<&str>) -> Result<Zeroizing<String>, SourceError> {
            match self.0.get(name, version) {
                Err(SourceError::NotFetched) => Err(SourceError::NotFound),
                other => other,
            }
        }
    }

    fn render(src: &str, m: Memory) -> Result<Rendered, RenderError> {
        Template::compile(src).expect("compiles").render(m.arc())
    }

    #[test]
    fn renders_secrets_keeps_trailing_newline_and_records_inputs() {
        let m = Memory::default().with("db-password", None, "s3cr3t").with(
            "db-password",
            Some("v1"),
            "old",
        );
        let r = render(
            "db:5432:*:app:{{ secret('db-password') }}\n# {{ secret('db-password', 'v1') }}\n",
            m,
        )
        .expect("renders");
        assert_eq!(r.text.as_str(), "db:5432:*:app:s3cr3t\n# old\n");
        let inputs: Vec<String> = r.inputs.iter().map(|i| i.to_string()).collect();
        assert_eq!(inputs, ["db-password", "db-password (version v1)"]);
        assert!(!format!("{r:?}").contains("s3cr3t"));
    }

    #[test]
    fn missing_disabled_forbidden_secrets_fail_naming_the_secret() {
        for (m, cause) in [
            (Memory::default(), SourceError::NotFound),
            (
                Memory::default().failing("x", SourceError::Disabled),
                SourceError::Disabled,
            ),
            (
                Memory::default().failing("x", SourceError::Forbidden),
                SourceError::Forbidden,
            ),
        ] {
            let err = render("a {{ secret('x') }} b", m).expect_err("fails");
            assert_eq!(
                err,
                RenderError::Secret {
                    input: SecretInput {
                        name: "x".into(),
                        version: None
                    },
                    cause
                }
            );
            assert!(err.to_string().starts_with("secret x: "));
        }
    }

    #[test]
    fn filters_quote_and_encode() {
        let m = Memory::default().with("v", None, "it's \"x\"\n\u{e9}");
        let r = render(
            "{{ secret('v') | tojson }}|{{ secret('v') | shell_quote }}|{{ secret('v') | dotenv_quote }}|{{ secret('v') | b64encode | b64decode == secret('v') }}|{{ 'aGk=' | b64decode }}",
            m,
        )
        .expect("renders");
        assert_eq!(
            r.text.as_str(),
            "\"it's \\\"x\\\"\\n\u{e9}\"|'it'\\''s \"x\"\n\u{e9}'|\"it's \\\"x\\\"\n\u{e9}\"|True|hi"
        );
    }

    #[test]
    fn errors_never_quote_a_value() {
        for src in [
            "{{ secret('v') | dotenv_quote }}",
            "{{ secret('v') | b64decode }}",
            "{% include secret('v') %}",
            "{{ secret('v') ~ undefined_thing }}",
        ] {
            let m = Memory::default().with("v", None, "${SECRETVALUE}");
            let err = render(src, m).expect_err(src);
            assert!(
                matches!(err, RenderError::Template { line: Some(1), .. }),
                "{err:?}"
            );
            assert!(!err.to_string().contains("SECRETVALUE"), "{err}");
        }
    }

    #[test]
    fn an_async_caller_renders_from_prefetched_secrets_fetching_what_is_missing() {
        let t = Template::compile("{{ secret('a') }}-{{ secret('b', 'v2') }}").expect("compiles");
        let mut fetched: Vec<SecretInput> = Vec::new();
        let rendered = loop {
            let mut have = Prefetched::default();
            for i in &fetched {
                have.insert(i.clone(), Ok(Zeroizing::new(format!("<{}>", i.name))));
            }
            match t.render(Arc::new(have)) {
                Ok(r) => break r,
                Err(RenderError::Secret {
                    input,
                    cause: SourceError::NotFetched,
                }) if fetched.len() < 5 => fetched.push(input),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(rendered.text.as_str(), "<a>-<b>");
        assert_eq!(fetched, [input("a", None), input("b", Some("v2"))]);
        assert_eq!(rendered.inputs.iter().cloned().collect::<Vec<_>>(), fetched);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = Template::compile("ok\nok\n{{ secret('x') \n").expect_err("bad");
        assert_eq!(err.line, 3, "{err}");
        assert!(Template::compile("{% if %}").is_err());
    }
}

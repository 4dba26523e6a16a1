//! A strict parser of the Prometheus text exposition format 0.0.4, for the tests: it checks the
//! structure (`# HELP`/`# TYPE` once per family and before its samples, sample names matching
//! their family's type, label syntax and escapes, no duplicate series, contiguous families,
//! well-formed histograms) and gives access to the sample values.

#![allow(dead_code)] // each test binary uses part of it

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use lepton_metrics::{AppState, InFlightGuard, LimitKind, Metrics};

/// Records into every per-app family of `app`: every status class, every limit, one request in
/// flight (while the returned guard lives), the gauges, both pull results, a compile, a state.
pub fn record_everything(metrics: &Metrics, app: &str) -> InFlightGuard {
    let handle = metrics.app(app);
    for status in [100, 200, 204, 301, 404, 500, 999] {
        handle.record_response(status, Duration::from_micros(u64::from(status) * 37));
    }
    for limit in LimitKind::ALL {
        handle.limit_hit(limit);
    }
    handle.set_queued(2);
    handle.set_instances(4);
    metrics.pull_finished(app, 1.25, true);
    metrics.pull_finished(app, 0.5, false);
    metrics.compile_finished(app, 3.0);
    metrics.set_app_state(app, AppState::Serving);
    handle.in_flight()
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One metric family: its `# HELP`, `# TYPE` and samples.
#[derive(Debug, Clone, Default)]
pub struct Family {
    pub name: String,
    pub help: Option<String>,
    pub kind: String,
    pub samples: Vec<Sample>,
}

impl Family {
    /// A family with no metadata and no samples yet.
    fn new(name: &str) -> Family {
        Family {
            name: name.to_string(),
            kind: "untyped".into(),
            ..Family::default()
        }
    }
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub families: Vec<Family>,
}

impl Exposition {
    /// Every sample, in order.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.families.iter().flat_map(|f| f.samples.iter())
    }

    /// The value of the sample `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// The family called `name`.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// Parses `{a="x",b="y"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = s.strip_prefix('{') else {
        return Ok((labels, s));
    };
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("duplicate label {name:?}"));
        }
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} at {rest:?}"));
        }
    }
}

/// Which family a sample name belongs to, given the family's type.
fn belongs(family: &Family, sample: &str) -> bool {
    match family.kind.as_str() {
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| sample.strip_suffix(suffix) == Some(family.name.as_str())),
        "summary" => {
            sample == family.name
                || ["_sum", "_count"]
                    .iter()
                    .any(|suffix| sample.strip_suffix(suffix) == Some(family.name.as_str()))
        }
        _ => sample == family.name,
    }
}

/// Parses and checks `text`; the error names the line.
pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let mut exposition = Exposition::default();
    let mut seen_families = HashSet::new();
    let mut seen_series = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let err = |msg: String| format!("line {}: {msg}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(err("empty line".into()));
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (keyword, name, rest) = (parts.next(), parts.next(), parts.next());
            let (Some(keyword @ ("HELP" | "TYPE")), Some(name)) = (keyword, name) else {
                continue; // a plain comment
            };
            if !is_metric_name(name) {
                return Err(err("bad metric name".into()));
            }
            let starts_new = exposition.families.last().is_none_or(|f| f.name != name);
            if starts_new {
                if !seen_families.insert(name.to_string()) {
                    return Err(err("family appears twice".into()));
                }
                exposition.families.push(Family::new(name));
            }
            let family = exposition.families.last_mut().ok_or("no family")?;
            if keyword == "HELP" {
                if family.help.is_some() {
                    return Err(err("second HELP".into()));
                }
                family.help = Some(rest.unwrap_or("").to_string());
            } else {
                let kind = rest.ok_or_else(|| err("TYPE without type".into()))?;
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(err("unknown type".into()));
                }
                if !family.samples.is_empty() || family.kind != "untyped" {
                    return Err(err("TYPE after samples or twice".into()));
                }
                family.kind = kind.to_string();
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(err("comment without a space".into()));
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(err("bad metric name".into()));
        }
        let (labels, rest) = parse_labels(&line[name_end..]).map_err(err)?;
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before value".into()))?
            .split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|e| err(format!("bad timestamp: {e}")))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        if !seen_series.insert((
            name.to_string(),
            labels.clone().into_iter().collect::<Vec<_>>(),
        )) {
            return Err(err("duplicate series".into()));
        }
        let family = match exposition.families.last_mut() {
            Some(f) if belongs(f, name) => f,
            _ => {
                // An untyped sample without metadata starts its own family.
                if !seen_families.insert(name.to_string()) {
                    return Err(err("sample of a family seen before".into()));
                }
                exposition.families.push(Family::new(name));
                exposition.families.last_mut().ok_or("no family")?
            }
        };
        if family.kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(err("negative counter".into()));
        }
        family.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for family in &exposition.families {
        if family.kind == "histogram" {
            check_histogram(family)?;
        }
    }
    Ok(exposition)
}

/// Per series: `le` buckets ascending and cumulative, `+Inf` present and equal to `_count`,
/// `_sum` present.
fn check_histogram(family: &Family) -> Result<(), String> {
    type Key = Vec<(String, String)>;
    let mut buckets: HashMap<Key, Vec<(f64, f64)>> = HashMap::new();
    let mut sums: HashMap<Key, f64> = HashMap::new();
    let mut counts: HashMap<Key, f64> = HashMap::new();
    for s in &family.samples {
        let mut labels = s.labels.clone();
        let le = labels.remove("le");
        let key: Key = labels.into_iter().collect();
        if s.name.ends_with("_bucket") {
            let le = le.ok_or_else(|| format!("{}: bucket without le", family.name))?;
            buckets
                .entry(key)
                .or_default()
                .push((parse_value(&le)?, s.value));
        } else if s.name.ends_with("_sum") {
            sums.insert(key, s.value);
        } else {
            counts.insert(key, s.value);
        }
    }
    for (key, series) in &buckets {
        let name = &family.name;
        if !series
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        {
            return Err(format!("{name}{key:?}: buckets not ascending/cumulative"));
        }
        let last = series.last().ok_or("empty")?;
        if last.0 != f64::INFINITY {
            return Err(format!("{name}{key:?}: no +Inf bucket"));
        }
        if counts.get(key) != Some(&last.1) {
            return Err(format!("{name}{key:?}: _count differs from +Inf bucket"));
        }
        if !sums.contains_key(key) {
            return Err(format!("{name}{key:?}: no _sum"));
        }
    }
    if buckets.len() != counts.len() || buckets.len() != sums.len() {
        return Err(format!("{}: _sum/_count without buckets", family.name));
    }
    Ok(())
}

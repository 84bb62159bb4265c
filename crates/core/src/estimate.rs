//! Estimates, before anything is read, of what each node will output, hold in memory and read.
//!
//! A node says what it knows ([`crate::Node::estimate`]): from the [`Shape`]s of its inputs (and
//! the values of inputs that are already known, such as a search's items) it gives the shape of
//! its output, the memory it needs beyond its inputs and output, the pixel bytes it reads and
//! the windows it computes ([`Estimate`]). The engine adds these up over the plan (which values
//! are held whole at once, which are computed window by window) into the run's peak.
//!
//! Bytes read are counted as the run reports them: the pixels a source delivers on its output
//! grid, as f32 (4 bytes a pixel a band a time step and item read).

use std::sync::Arc;

use serde::Serialize;

use crate::{Grid, Value, ValueType};

/// What is known, before it exists, of a value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Nothing (a plugin's output, or one that depends on data not fetched yet).
    Unknown,
    /// Too small to count: items, a model, JSON.
    Small,
    /// An array over a grid.
    Pixels(Pixels),
}

/// A raster, matrix or class map over a grid.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pixels {
    /// Raster, Matrix or Labels.
    pub ty: ValueType,
    /// Time steps (1 for matrices and class maps).
    pub times: usize,
    /// Bands of a raster, features of a matrix, 1 for a class map.
    pub bands: usize,
    /// The grid it covers.
    pub grid: Grid,
    /// Computed window by window, in windows of at most this side, instead of held whole.
    pub window: Option<usize>,
    /// Bytes a worker holds at most while it computes one window of it: the window and its
    /// inputs' windows, or more while one of those was computed. Set by the engine.
    pub per_window: u64,
    /// Pixel bytes one pass over it reads: a windowed source reads its files again in every
    /// pass. Set by the engine.
    pub pass_read: u64,
    /// Its time steps are only a lower bound (the items are not known yet).
    pub at_least: bool,
    /// The labels of its time steps ([`crate::Raster::times`]) when they are known (a source
    /// whose items are known, or a value that exists), else empty; nodes that choose time
    /// steps by date ([`crate::time`]) count what they keep from them.
    #[serde(skip)]
    pub time_labels: Vec<String>,
}

impl Pixels {
    /// A value of `ty` held whole.
    pub fn whole(ty: ValueType, times: usize, bands: usize, grid: Grid) -> Pixels {
        Pixels {
            ty,
            times,
            bands,
            grid,
            window: None,
            per_window: 0,
            pass_read: 0,
            at_least: false,
            time_labels: Vec::new(),
        }
    }

    /// The same, with its time steps labelled `labels` (ignored unless there is one a step).
    pub fn with_time_labels(mut self, labels: &[String]) -> Pixels {
        if labels.len() == self.times {
            self.time_labels = labels.to_vec();
        }
        self
    }

    /// The labels of its time steps, when they are known.
    pub fn known_time_labels(&self) -> Option<&[String]> {
        (!self.time_labels.is_empty() && self.time_labels.len() == self.times)
            .then_some(self.time_labels.as_slice())
    }

    /// Bytes of one pixel: 4 per band and time step (f32), a class map's 2 (u16); a matrix's
    /// pixel also has its validity flag.
    pub fn pixel_bytes(&self) -> u64 {
        let values = (self.times as u64).saturating_mul(self.bands as u64);
        match self.ty {
            ValueType::Labels => 2,
            ValueType::Matrix => values.saturating_mul(4).saturating_add(1),
            _ => values.saturating_mul(4),
        }
    }

    /// Bytes of the whole value.
    pub fn bytes(&self) -> u64 {
        (self.grid.len() as u64).saturating_mul(self.pixel_bytes())
    }

    /// Bytes of its largest window (the whole value when it is not windowed).
    pub fn window_bytes(&self) -> u64 {
        match self.window {
            Some(side) => {
                let side = side.max(1);
                let px = (self.grid.width.min(side) as u64) * (self.grid.height.min(side) as u64);
                px.saturating_mul(self.pixel_bytes())
            }
            None => self.bytes(),
        }
    }

    /// Windows it is computed in (1 when held whole).
    pub fn windows(&self) -> u64 {
        match self.window {
            Some(side) => {
                let side = side.max(1);
                (self.grid.width.div_ceil(side) as u64) * (self.grid.height.div_ceil(side) as u64)
            }
            None => 1,
        }
    }

    /// Bytes held whole in memory: none for a windowed value.
    pub fn held_bytes(&self) -> u64 {
        match self.window {
            Some(_) => 0,
            None => self.bytes(),
        }
    }

    /// Memory a node needs to read it window by window on `threads` workers (nothing when it
    /// is held whole: it is already counted).
    pub fn pass_bytes(&self, threads: usize) -> u64 {
        match self.window {
            Some(_) => self.per_window.saturating_mul(threads.max(1) as u64),
            None => 0,
        }
    }

    /// The same value over `grid` with `bands` bands and `times` time steps, windowed as this one
    /// (its time labels kept only when its type and number of time steps are).
    pub fn reshaped(&self, ty: ValueType, times: usize, bands: usize) -> Pixels {
        let time_labels = if ty == self.ty && times == self.times {
            self.time_labels.clone()
        } else {
            Vec::new()
        };
        Pixels {
            ty,
            times,
            bands,
            time_labels,
            ..self.clone()
        }
    }

    /// `times x bands x height x width` as text, `>=` before a lower bound.
    pub fn dims(&self) -> String {
        let at_least = if self.at_least { ">=" } else { "" };
        match self.ty {
            ValueType::Raster => format!(
                "{at_least}{} x {} x {} x {}",
                self.times, self.bands, self.grid.height, self.grid.width
            ),
            ValueType::Matrix => format!(
                "{} x {} x {at_least}{}",
                self.grid.height, self.grid.width, self.bands
            ),
            _ => format!("{} x {}", self.grid.height, self.grid.width),
        }
    }
}

impl Shape {
    /// The shape of a value that exists.
    pub fn of(value: &Value) -> Shape {
        match value {
            Value::Raster(r) => {
                let (t, b, _, _) = r.data.dim();
                Shape::Pixels(
                    Pixels::whole(ValueType::Raster, t, b, r.grid.clone())
                        .with_time_labels(&r.times),
                )
            }
            Value::Matrix(m) => Shape::Pixels(Pixels::whole(
                ValueType::Matrix,
                1,
                m.features.len(),
                m.grid.clone(),
            )),
            Value::Labels(l) => {
                Shape::Pixels(Pixels::whole(ValueType::Labels, 1, 1, l.grid.clone()))
            }
            Value::Deferred(d) => match Shape::of(&d.template) {
                Shape::Pixels(mut p) => {
                    p.grid = d.grid().clone();
                    p.window = Some(d.window);
                    Shape::Pixels(p)
                }
                other => other,
            },
            Value::Items(_) | Value::Model(_) | Value::Json(_) => Shape::Small,
        }
    }

    /// The pixels, when it is an array.
    pub fn pixels(&self) -> Option<&Pixels> {
        match self {
            Shape::Pixels(p) => Some(p),
            _ => None,
        }
    }

    /// Bytes held whole in memory (0 for small, unknown and windowed values).
    pub fn held_bytes(&self) -> u64 {
        self.pixels().map_or(0, Pixels::held_bytes)
    }
}

/// What a node's inputs are known to be before it runs.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Each connected port's shape.
    pub shapes: Vec<(String, Shape)>,
    /// The values of inputs that exist already (a search's items once it has run).
    pub values: Vec<(String, Arc<Value>)>,
    /// Workers a node reads windows with.
    pub threads: usize,
    /// The window side asked for (`--window`).
    pub window: Option<usize>,
    /// The run's memory limit in bytes.
    pub memory_limit: Option<u64>,
}

impl Known {
    /// The shape of the input on `port` ([`Shape::Unknown`] when not connected).
    pub fn shape(&self, port: &str) -> &Shape {
        self.shapes
            .iter()
            .find(|(p, _)| p == port)
            .map_or(&Shape::Unknown, |(_, s)| s)
    }

    /// The pixels of the input on `port`, when it is an array of known shape.
    pub fn pixels(&self, port: &str) -> Option<&Pixels> {
        self.shape(port).pixels()
    }

    /// The value on `port`, when it exists already.
    pub fn value(&self, port: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|(p, _)| p == port)
            .map(|(_, v)| v.as_ref())
    }

    /// Memory to read every windowed input once, window by window.
    pub fn pass_bytes(&self) -> u64 {
        self.shapes
            .iter()
            .filter_map(|(_, s)| s.pixels())
            .map(|p| p.pass_bytes(self.threads))
            .sum()
    }
}

/// A node's estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// Its output.
    pub output: Shape,
    /// Memory it needs while it runs beyond its inputs and its output: buffers, a sample, the
    /// windows its workers hold.
    pub working_bytes: u64,
    /// Pixel bytes it reads from files (see the module's doc).
    pub read_bytes: u64,
    /// Windows it computes in passes of its own over windowed inputs.
    pub windows: u64,
}

impl Estimate {
    /// An output of this shape and nothing else.
    pub fn of(output: Shape) -> Estimate {
        Estimate {
            output,
            working_bytes: 0,
            read_bytes: 0,
            windows: 0,
        }
    }

    /// Nothing known.
    pub fn unknown() -> Estimate {
        Estimate::of(Shape::Unknown)
    }

    /// Memory it needs while running (see [`Estimate::working_bytes`]).
    pub fn working(mut self, bytes: u64) -> Estimate {
        self.working_bytes = bytes;
        self
    }

    /// One pass over every windowed input of `known` (see [`Estimate::passes`]).
    pub fn one_pass(self, known: &Known) -> Estimate {
        self.passes(known, 1)
    }

    /// `n` passes, one after the other, over every windowed input of `known`: one window per
    /// worker of each in memory, their windows and what they read, `n` times.
    pub fn passes(mut self, known: &Known, n: u64) -> Estimate {
        let windowed: Vec<&Pixels> = known
            .shapes
            .iter()
            .filter_map(|(_, s)| s.pixels())
            .filter(|p| p.window.is_some())
            .collect();
        self.working_bytes = self.working_bytes.saturating_add(known.pass_bytes());
        let windows = windowed.iter().map(|p| p.windows()).max().unwrap_or(0);
        let read: u64 = windowed.iter().map(|p| p.pass_read).sum();
        self.windows = self.windows.saturating_add(windows.saturating_mul(n));
        self.read_bytes = self.read_bytes.saturating_add(read.saturating_mul(n));
        self
    }
}

/// GDAL's block cache for a run with a memory limit: 256 MiB, or an eighth of a limit below
/// 2 GiB.
pub fn gdal_cache_bytes(memory_limit: Option<u64>) -> u64 {
    const MAX: u64 = 256 << 20;
    memory_limit.map_or(MAX, |l| (l / 8).min(MAX))
}

/// What a run needs besides its values: the program, its threads and libraries (128 MiB) and
/// GDAL's block cache ([`gdal_cache_bytes`]).
pub fn base_bytes(memory_limit: Option<u64>) -> u64 {
    (128 << 20) + gdal_cache_bytes(memory_limit)
}

/// `bytes` for people: `1.5 GiB`, `310.0 MiB`, `12.0 KiB`, `100 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Parses a size: bytes (`1073741824`) or a number with a binary unit (`512M`, `4G`, `1.5GiB`,
/// `2T`; K, M, G, T with an optional `iB` or `B`, any case).
///
/// # Errors
/// A message saying what is wrong with `text`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (say 4G, 512M or a number of bytes)"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let scale: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("`{text}`: unknown unit (use K, M, G or T)")),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is not a usable size"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(side: usize) -> Grid {
        crate::Grid {
            crs: "EPSG:32618".into(),
            transform: [0.0, 10.0, 0.0, 0.0, 0.0, -10.0],
            width: side,
            height: side,
        }
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("4G"), Ok(4 << 30));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("4X").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("-1G").is_err());
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("1e400").is_err());
    }

    #[test]
    fn a_windowed_value_holds_nothing_whole_and_counts_its_windows() {
        let mut p = Pixels::whole(ValueType::Raster, 1, 12, grid(3000));
        assert_eq!(p.bytes(), 3000 * 3000 * 12 * 4);
        assert_eq!(p.held_bytes(), p.bytes());
        assert_eq!(p.windows(), 1);
        p.window = Some(1024);
        p.per_window = p.window_bytes();
        assert_eq!(p.held_bytes(), 0);
        assert_eq!(p.windows(), 9);
        assert_eq!(p.window_bytes(), 1024 * 1024 * 12 * 4);
        assert_eq!(p.pass_bytes(2), 2 * 1024 * 1024 * 12 * 4);
        assert_eq!(human_bytes(p.bytes()), "412.0 MiB");
    }

    #[test]
    fn time_labels_travel_while_the_time_steps_do() {
        let labels = vec![
            "2021-07-14T15:49:11Z".to_string(),
            "2021-08-03T15:49:09Z".into(),
        ];
        let p = Pixels::whole(ValueType::Raster, 2, 3, grid(10)).with_time_labels(&labels);
        assert_eq!(p.known_time_labels(), Some(labels.as_slice()));
        assert_eq!(
            p.reshaped(ValueType::Raster, 2, 4).known_time_labels(),
            Some(labels.as_slice())
        );
        assert_eq!(
            p.reshaped(ValueType::Raster, 1, 3).known_time_labels(),
            None
        );
        assert_eq!(
            p.reshaped(ValueType::Matrix, 2, 6).known_time_labels(),
            None
        );
        let wrong = Pixels::whole(ValueType::Raster, 3, 3, grid(10)).with_time_labels(&labels);
        assert_eq!(wrong.known_time_labels(), None);
    }
}

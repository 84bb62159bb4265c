//! The synthetic land cover of the big fixtures, as functions of world coordinates.
//!
//! Unlike the small scene, whose noise lattices are drawn in sequence from one generator over
//! its own extent, everything here is a pure function of a 10 m pixel's position in one world
//! frame (and of seeds): lattice values of the value noise, the texture jitter, the sensor noise,
//! the rivers, roads and clouds. So any block of any tile can be computed on its own, in any
//! order and on any thread, and adjacent tiles continue each other exactly across their edges.
//!
//! The frame: `u` counts 10 m columns east and `v` 10 m rows south of [`WORLD_X0`],
//! [`WORLD_Y0`], the north-west corner of Sentinel-2 tile 18TWR (EPSG:32618).

use super::noise::Rng;
use super::spectra::{CLOUD, SCL_OF_CLASS, SPECTRA};

/// West edge of the world frame: tile 18TWR's (the small scene lies inside it).
pub(crate) const WORLD_X0: f64 = 499_980.0;
/// North edge of the world frame.
pub(crate) const WORLD_Y0: f64 = 5_100_000.0;
/// The class value of a pixel outside the swath.
pub(crate) const NODATA_CLASS: u8 = 255;

/// Cloud shadows fall this many 10 m pixels east and south of their cloud (as in the small
/// scene).
const SHADOW_OFFSET: (i64, i64) = (14, 11);
/// Standard deviation of the additive sensor noise, in reflectance.
const SENSOR_NOISE: f64 = 0.003;

/// SplitMix64's finalizer over a seed and two coordinates: a well-mixed 64-bit value.
#[inline]
pub(crate) fn hash3(seed: u64, a: i64, b: i64) -> u64 {
    let mut z = seed
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((a as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add((b as u64).wrapping_mul(0xABC9_8388_FB8F_AC03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Approximately standard normal from 64 random bits: the sum of their four 16-bit quarters as
/// uniforms, rescaled (like [`Rng::gaussish`], from one hash instead of four draws).
#[inline]
fn gauss(h: u64) -> f64 {
    let q = |k: u32| ((h >> (16 * k)) & 0xFFFF) as f64 + 0.5;
    let s = (q(0) + q(1) + q(2) + q(3)) / 65_536.0;
    (s - 2.0) * 3f64.sqrt()
}

/// `x.floor()` as an integer, without a libm call (the baseline x86-64 has no rounding
/// instruction); exact for every |x| below 2^53.
#[inline]
fn floor_i64(x: f64) -> i64 {
    let i = x as i64;
    if (i as f64) > x {
        i - 1
    } else {
        i
    }
}

/// Uniform in [0, 1) from 64 random bits.
#[inline]
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Value noise in [-1, 1] on an unbounded lattice of spacing `cell` pixels, whose values are
/// hashes of their lattice coordinates; smoothstep interpolation, like the small scene's.
#[derive(Debug, Clone, Copy)]
struct HashNoise {
    seed: u64,
    inv_cell: f64,
}

impl HashNoise {
    fn lattice(&self, i: i64, j: i64) -> f64 {
        unit(hash3(self.seed, i, j)) * 2.0 - 1.0
    }

    /// The noise at `(x, y)`, its lattice values hashed on the fly.
    #[cfg(test)]
    fn at(&self, x: f64, y: f64) -> f64 {
        interpolate(self.inv_cell, x, y, |i, j| self.lattice(i, j))
    }

    /// The lattice values needed for every pixel of `u` x `v` (inclusive ranges), computed once.
    fn patch(&self, u: (i64, i64), v: (i64, i64)) -> NoisePatch {
        let cell_of = |p: i64| floor_i64(p as f64 * self.inv_cell);
        let (i0, i1) = (cell_of(u.0), cell_of(u.1) + 1);
        let (j0, j1) = (cell_of(v.0), cell_of(v.1) + 1);
        let ni = (i1 - i0 + 1) as usize;
        let values = (j0..=j1)
            .flat_map(|j| (i0..=i1).map(move |i| (i, j)))
            .map(|(i, j)| self.lattice(i, j))
            .collect();
        NoisePatch {
            inv_cell: self.inv_cell,
            i0,
            j0,
            ni,
            values,
        }
    }
}

/// The value noise at `(x, y)` for lattice spacing `1 / inv_cell`, from lattice values `at(i, j)`:
/// one formula for hashed and tabulated lattices, so that both give the same bits.
#[inline]
fn interpolate(inv_cell: f64, x: f64, y: f64, at: impl Fn(i64, i64) -> f64) -> f64 {
    let (fx, fy) = (x * inv_cell, y * inv_cell);
    let (i, j) = (floor_i64(fx), floor_i64(fy));
    let (tx, ty) = (smooth(fx - i as f64), smooth(fy - j as f64));
    let top = at(i, j) * (1.0 - tx) + at(i + 1, j) * tx;
    let bottom = at(i, j + 1) * (1.0 - tx) + at(i + 1, j + 1) * tx;
    top * (1.0 - ty) + bottom * ty
}

/// A [`HashNoise`]'s lattice values over a rectangle of pixels.
#[derive(Debug, Clone)]
struct NoisePatch {
    inv_cell: f64,
    i0: i64,
    j0: i64,
    ni: usize,
    values: Vec<f64>,
}

impl NoisePatch {
    /// The noise at pixel `(x, y)` of the rectangle the patch was made for.
    #[inline]
    fn at(&self, x: f64, y: f64) -> f64 {
        interpolate(self.inv_cell, x, y, |i, j| {
            self.values[(j - self.j0) as usize * self.ni + (i - self.i0) as usize]
        })
    }
}

fn smooth(t: f64) -> f64 {
    t * t * (3.0 - 2.0 * t)
}

/// Octaves of [`HashNoise`], each half the size and weight of the last; roughly in [-1, 1].
#[derive(Debug, Clone)]
struct HashFractal {
    layers: Vec<HashNoise>,
    norm: f64,
}

impl HashFractal {
    fn new(seed: u64, cell: f64, octaves: u32) -> Self {
        let layers: Vec<HashNoise> = (0..octaves)
            .map(|o| HashNoise {
                seed: hash3(seed, i64::from(o), 0),
                inv_cell: f64::from(1u32 << o) / cell,
            })
            .collect();
        let norm = (0..octaves).map(|o| 0.5f64.powi(o as i32)).sum();
        HashFractal { layers, norm }
    }

    /// The noise at `(x, y)`.
    #[cfg(test)]
    fn at(&self, x: f64, y: f64) -> f64 {
        fractal(self.norm, self.layers.iter().map(|l| l.at(x, y)))
    }

    /// The octaves' lattices over `u` x `v` (inclusive pixel ranges).
    fn patch(&self, u: (i64, i64), v: (i64, i64)) -> FractalPatch {
        FractalPatch {
            layers: self.layers.iter().map(|l| l.patch(u, v)).collect(),
            norm: self.norm,
        }
    }
}

/// Octaves summed with halving weights, normalized: one formula for both forms of the noise.
#[inline]
fn fractal(norm: f64, octaves: impl Iterator<Item = f64>) -> f64 {
    let mut sum = 0.0;
    let mut weight = 1.0;
    for v in octaves {
        sum += v * weight;
        weight *= 0.5;
    }
    sum / norm
}

/// A [`HashFractal`] over a rectangle of pixels.
#[derive(Debug, Clone)]
struct FractalPatch {
    layers: Vec<NoisePatch>,
    norm: f64,
}

impl FractalPatch {
    #[inline]
    fn at(&self, x: f64, y: f64) -> f64 {
        fractal(self.norm, self.layers.iter().map(|l| l.at(x, y)))
    }
}

/// The ground: land cover classes and brightness texture, the same for every date.
#[derive(Debug, Clone)]
pub(crate) struct Land {
    forest: HashFractal,
    town: HashFractal,
    soil: HashFractal,
    pond: HashFractal,
    tex: HashFractal,
    /// Pixels west of `0.3 * v - swath_offset` (at 60 m cell centres) have no data.
    swath_offset: f64,
}

/// Rivers run north-south about every this many pixels.
const RIVER_SPACING: f64 = 2500.0;
/// East-west roads, about every this many pixels.
const ROAD_SPACING: f64 = 1300.0;
/// Diagonal roads, about every this many pixels across.
const DIAGONAL_SPACING: f64 = 1700.0;

/// The index of the river nearest to column `x`.
#[inline]
fn river_index(x: f64) -> i64 {
    ((x - 1200.0) / RIVER_SPACING).round() as i64
}

/// The centre column of river `k` on row `y`.
fn river_centre(k: i64, y: f64) -> f64 {
    let k = k as f64;
    k * RIVER_SPACING
        + 1200.0
        + 150.0 * (y / 900.0 + k).sin()
        + 48.0 * (y / 70.0 + 1.7 * k).sin()
        + 18.0 * (y / 23.0 + 1.0 + k).sin()
}

impl Land {
    /// The ground of a fixture whose tiles are `tile_size` pixels wide: the nodata swath edge
    /// crosses the south-west of the north-west tile and continues south across the tiles below.
    pub(crate) fn new(tile_size: usize) -> Self {
        const SEED: u64 = 0x7133_BE7A;
        Land {
            forest: HashFractal::new(hash3(SEED, 1, 0), 110.0, 3),
            town: HashFractal::new(hash3(SEED, 2, 0), 150.0, 2),
            soil: HashFractal::new(hash3(SEED, 3, 0), 70.0, 2),
            pond: HashFractal::new(hash3(SEED, 4, 0), 90.0, 2),
            tex: HashFractal::new(hash3(SEED, 5, 0), 12.0, 2),
            swath_offset: 0.1 * tile_size as f64,
        }
    }

    /// True when the 60 m cell holding 10 m pixel `(u, v)` lies outside the swath.
    pub(crate) fn outside_swath(&self, u: i64, v: i64) -> bool {
        let uc = (u.div_euclid(6) * 6) as f64 + 3.0;
        let vc = (v.div_euclid(6) * 6) as f64 + 3.0;
        uc < 0.3 * vc - self.swath_offset
    }

    /// Everything needed for the pixels of `u` x `v` (inclusive ranges), computed once: the
    /// noise lattices and the rivers' centres on each row.
    fn patch(&self, u: (i64, i64), v: (i64, i64)) -> LandPatch<'_> {
        let k0 = river_index(u.0 as f64) - 1;
        let k1 = river_index(u.1 as f64) + 1;
        let rivers = (v.0..=v.1)
            .map(|y| (k0..=k1).map(|k| river_centre(k, y as f64)).collect())
            .collect();
        LandPatch {
            land: self,
            forest: self.forest.patch(u, v),
            town: self.town.patch(u, v),
            soil: self.soil.patch(u, v),
            pond: self.pond.patch(u, v),
            tex: self.tex.patch(u, v),
            v0: v.0,
            k0,
            rivers,
        }
    }
}

/// [`Land`] over a rectangle of pixels.
struct LandPatch<'a> {
    land: &'a Land,
    forest: FractalPatch,
    town: FractalPatch,
    soil: FractalPatch,
    pond: FractalPatch,
    tex: FractalPatch,
    /// First row.
    v0: i64,
    /// First river index in `rivers`.
    k0: i64,
    /// Per row from `v0`, the centres of rivers `k0..`.
    rivers: Vec<Vec<f64>>,
}

impl LandPatch<'_> {
    /// The class of 10 m pixel `(u, v)`, [`NODATA_CLASS`] outside the swath: water (rivers,
    /// ponds) over roads and towns over forest over bare soil over grass / crops.
    fn class(&self, u: i64, v: i64) -> u8 {
        if self.land.outside_swath(u, v) {
            return NODATA_CLASS;
        }
        let (x, y) = (u as f64, v as f64);
        // Rivers: meandering north-south lines; the nearest one is within a spacing.
        let centres = &self.rivers[(v - self.v0) as usize];
        let k = (river_index(x) - self.k0) as usize;
        if centres[k - 1..=k + 1].iter().any(|c| (x - c).abs() < 5.5) {
            return 0;
        }
        if self.pond.at(x, y) > 0.52 {
            return 0;
        }
        let r = ((y - 300.0) / ROAD_SPACING).round();
        let road1 = (y - (r * ROAD_SPACING + 300.0 + 9.0 * (x / 80.0 + r).sin())).abs() < 1.6;
        let d = (x * 0.8 - y * 0.6).rem_euclid(DIAGONAL_SPACING);
        let road2 = (d - 0.5 * DIAGONAL_SPACING).abs() < 1.3;
        if road1 || road2 || self.town.at(x, y) > 0.30 {
            return 3;
        }
        if self.forest.at(x, y) > 0.08 {
            return 1;
        }
        if self.soil.at(x, y) > 0.38 {
            return 4;
        }
        2
    }

    /// The brightness texture of 10 m pixel `(u, v)` (multiplies the class spectrum).
    fn texture(&self, u: i64, v: i64) -> f64 {
        let jitter = gauss(hash3(0x7E87_0000, u, v));
        1.0 + 0.07 * self.tex.at(u as f64, v as f64) + 0.02 * jitter
    }
}

/// How cloudy a date is: clouds are discs on a lattice of `cell` pixels, one in a cell with
/// probability `chance`, radius `radius.0..radius.1` pixels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cloudiness {
    /// Lattice spacing in 10 m pixels.
    pub cell: f64,
    /// Probability of a cloud in a cell.
    pub chance: f64,
    /// Smallest and largest radius in 10 m pixels; the largest must stay below `cell`.
    pub radius: (f64, f64),
}

/// The clouds of one date.
#[derive(Debug, Clone)]
pub(crate) struct Clouds {
    seed: u64,
    c: Cloudiness,
    edge: HashFractal,
}

/// One cloud: centre and radius in 10 m pixels.
#[derive(Debug, Clone, Copy)]
struct Disc {
    x: f64,
    y: f64,
    r: f64,
}

impl Clouds {
    /// The clouds of the date with this seed.
    pub(crate) fn new(seed: u64, c: Cloudiness) -> Self {
        Clouds {
            seed,
            c,
            edge: HashFractal::new(hash3(seed, 0xED6E, 0), 16.0, 2),
        }
    }

    /// The cell of the cloud lattice holding pixel coordinate `p`.
    #[inline]
    fn cell_of(&self, p: f64) -> i64 {
        floor_i64(p / self.c.cell)
    }

    /// The cloud of lattice cell `(i, j)`, if it has one. Its centre lies in the cell's inner
    /// 70 %, so (with a radius below the cell size) only the 3 x 3 cells around a pixel can
    /// cover it.
    fn disc(&self, i: i64, j: i64) -> Option<Disc> {
        let mut rng = Rng::new(hash3(self.seed, i, j));
        if rng.uniform() >= self.c.chance {
            return None;
        }
        let (a, b, r) = (rng.uniform(), rng.uniform(), rng.uniform());
        Some(Disc {
            x: (i as f64 + 0.15 + 0.7 * a) * self.c.cell,
            y: (j as f64 + 0.15 + 0.7 * b) * self.c.cell,
            r: self.c.radius.0 + (self.c.radius.1 - self.c.radius.0) * r,
        })
    }

    /// The clouds that can touch the pixels of `u` x `v` (inclusive ranges) or cast a shadow on
    /// them.
    fn patch(&self, u: (i64, i64), v: (i64, i64)) -> CloudPatch<'_> {
        let lo = |p: i64, shift: i64| self.cell_of((p - shift) as f64) - 1;
        let hi = |p: i64| self.cell_of(p as f64) + 1;
        let (i0, i1) = (lo(u.0, SHADOW_OFFSET.0), hi(u.1));
        let (j0, j1) = (lo(v.0, SHADOW_OFFSET.1), hi(v.1));
        let ni = (i1 - i0 + 1) as usize;
        let discs = (j0..=j1)
            .flat_map(|j| (i0..=i1).map(move |i| (i, j)))
            .map(|(i, j)| self.disc(i, j))
            .collect();
        CloudPatch {
            clouds: self,
            i0,
            j0,
            ni,
            discs,
        }
    }
}

/// [`Clouds`] over a rectangle of pixels: the clouds of the lattice cells around it.
struct CloudPatch<'a> {
    clouds: &'a Clouds,
    i0: i64,
    j0: i64,
    ni: usize,
    discs: Vec<Option<Disc>>,
}

impl CloudPatch<'_> {
    /// Opacity (0..1) of the clouds at 10 m pixel `(u, v)`: noisy discs, as in the small scene.
    fn alpha(&self, u: i64, v: i64) -> f64 {
        let (x, y) = (u as f64, v as f64);
        let (ci, cj) = (self.clouds.cell_of(x), self.clouds.cell_of(y));
        let mut alpha: f64 = 0.0;
        let mut edge = None;
        for j in cj - 1..=cj + 1 {
            let row = (j - self.j0) as usize * self.ni;
            for i in ci - 1..=ci + 1 {
                let Some(d) = self.discs[row + (i - self.i0) as usize] else {
                    continue;
                };
                let dist = ((x - d.x).powi(2) + (y - d.y).powi(2)).sqrt() / d.r;
                // The edge noise moves the outline by at most 0.3 radii.
                if dist >= 1.3 {
                    continue;
                }
                let e = *edge.get_or_insert_with(|| self.clouds.edge_at(x, y));
                alpha = alpha.max(((1.0 - (dist + 0.3 * e)) * 3.0).clamp(0.0, 1.0));
            }
        }
        alpha
    }

    /// Opacity of the shadow at `(u, v)`: the clouds' opacity [`SHADOW_OFFSET`] north-west.
    fn shadow(&self, u: i64, v: i64) -> f64 {
        self.alpha(u - SHADOW_OFFSET.0, v - SHADOW_OFFSET.1)
    }
}

impl Clouds {
    /// The edge noise at `(x, y)` (evaluated near clouds only: hashed on the fly).
    fn edge_at(&self, x: f64, y: f64) -> f64 {
        fractal(
            self.edge.norm,
            self.edge
                .layers
                .iter()
                .map(|l| interpolate(l.inv_cell, x, y, |i, j| l.lattice(i, j))),
        )
    }
}

/// Everything about a 10 m pixel that the bands are made from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pixel {
    /// Class id, or [`NODATA_CLASS`].
    pub class: u8,
    /// Brightness texture.
    pub texture: f32,
    /// Cloud opacity.
    pub alpha: f32,
    /// Shadow opacity.
    pub shadow: f32,
}

/// The ground and one date's clouds over a rectangle of pixels, ready to make its [`Pixel`]s.
pub(crate) struct Area<'a> {
    land: LandPatch<'a>,
    clouds: CloudPatch<'a>,
    /// First column.
    u0: i64,
    /// Per column from `u0`: whether a cloud, and whether a shadow, can reach it on the area's
    /// rows (elsewhere both opacities are exactly 0).
    reach: Vec<(bool, bool)>,
}

impl<'a> Area<'a> {
    /// The pixels of `u` x `v` (inclusive ranges) of `land` under `clouds`.
    pub(crate) fn new(land: &'a Land, clouds: &'a Clouds, u: (i64, i64), v: (i64, i64)) -> Self {
        let clouds = clouds.patch(u, v);
        let mut reach = vec![(false, false); (u.1 - u.0 + 1).max(0) as usize];
        for d in clouds.discs.iter().flatten() {
            // A disc reaches 1.3 radii at most (see `CloudPatch::alpha`); one more pixel of margin.
            let m = 1.3 * d.r + 1.0;
            for (shadow, (du, dv)) in [(false, (0, 0)), (true, SHADOW_OFFSET)] {
                let (y0, y1) = ((v.0 - dv) as f64, (v.1 - dv) as f64);
                if d.y + m < y0 || d.y - m > y1 {
                    continue;
                }
                let lo = (floor_i64(d.x - m) + du).max(u.0);
                let hi = (floor_i64(d.x + m) + 1 + du).min(u.1);
                for c in lo..=hi {
                    let r = &mut reach[(c - u.0) as usize];
                    if shadow {
                        r.1 = true;
                    } else {
                        r.0 = true;
                    }
                }
            }
        }
        Area {
            land: land.patch(u, v),
            clouds,
            u0: u.0,
            reach,
        }
    }

    /// The pixel at `(u, v)`, which must lie in the area.
    pub(crate) fn pixel(&self, u: i64, v: i64) -> Pixel {
        let class = self.land.class(u, v);
        if class == NODATA_CLASS {
            return Pixel {
                class,
                texture: 0.0,
                alpha: 0.0,
                shadow: 0.0,
            };
        }
        let (cloud, shadow) = self.reach[(u - self.u0) as usize];
        Pixel {
            class,
            texture: self.land.texture(u, v) as f32,
            alpha: if cloud {
                self.clouds.alpha(u, v) as f32
            } else {
                0.0
            },
            shadow: if shadow {
                self.clouds.shadow(u, v) as f32
            } else {
                0.0
            },
        }
    }
}

impl Pixel {
    /// Reflectance in band `b` (index into the band table), clouds and shadows included.
    #[inline]
    pub(crate) fn reflectance(&self, b: usize) -> f64 {
        let surface = SPECTRA[self.class as usize][b]
            * f64::from(self.texture)
            * (1.0 - 0.6 * f64::from(self.shadow));
        let a = f64::from(self.alpha);
        surface * (1.0 - a) + CLOUD[b] * a
    }

    /// The scene classification of a 20 m pixel made of these four 10 m pixels: 0 nodata,
    /// 3 shadow, 8 / 9 cloud medium / high probability, else that of the first pixel's class.
    pub(crate) fn scl(four: [&Pixel; 4]) -> u8 {
        if four[0].class == NODATA_CLASS {
            return 0;
        }
        let a = four.iter().map(|p| f64::from(p.alpha)).sum::<f64>() / 4.0;
        let s = four.iter().map(|p| f64::from(p.shadow)).sum::<f64>() / 4.0;
        if a >= 0.6 {
            9
        } else if a >= 0.2 {
            8
        } else if s >= 0.3 {
            3
        } else {
            SCL_OF_CLASS[four[0].class as usize]
        }
    }
}

/// The digital number (reflectance x 10000, 1..=65535) of a coarse pixel of band `b` whose mean
/// reflectance is `mean`, with sensor noise drawn from the pixel's position `(col, row)` on the
/// band's own world grid: the same pixel gets the same noise in every tile that holds it.
#[inline]
pub(crate) fn dn(seed: u64, b: usize, col: i64, row: i64, mean: f64) -> u16 {
    let noise = gauss(hash3(seed ^ ((b as u64 + 1) << 56), col, row));
    let value = mean + SENSOR_NOISE * noise;
    (value * 10_000.0).round().clamp(1.0, 65_535.0) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_i64_is_floor() {
        for x in [
            -2.5,
            -2.0,
            -1e-300,
            -0.0,
            0.0,
            0.3,
            1.0,
            7.999_999,
            1e15 + 0.5,
            -1e15 - 0.5,
        ] {
            assert_eq!(floor_i64(x), x.floor() as i64, "{x}");
        }
    }

    #[test]
    fn gauss_is_roughly_standard_normal() {
        let n = 50_000;
        let xs: Vec<f64> = (0..n).map(|i| gauss(hash3(1, i, 0))).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.03,
            "{mean} {var}"
        );
    }

    #[test]
    fn hashed_noise_is_smooth_bounded_and_continuous_across_lattice_cells() {
        let f = HashFractal::new(7, 32.0, 3);
        for y in -50..50 {
            for x in -50..49 {
                let (a, b) = (f.at(x as f64, y as f64), f.at(x as f64 + 1.0, y as f64));
                assert!(a.abs() <= 1.0 && (a - b).abs() < 0.3, "({x}, {y}): {a} {b}");
            }
        }
    }

    #[test]
    fn a_patch_gives_the_bits_of_the_hashed_noise_anywhere_in_it() {
        let f = HashFractal::new(11, 12.0, 2);
        let (u, v) = ((-40, 95), (1000, 1013));
        let p = f.patch(u, v);
        for y in v.0..=v.1 {
            for x in u.0..=u.1 {
                let (x, y) = (x as f64, y as f64);
                assert_eq!(p.at(x, y).to_bits(), f.at(x, y).to_bits(), "({x}, {y})");
            }
        }
    }

    #[test]
    fn land_has_every_class_and_a_swath_edge() {
        let land = Land::new(1200);
        let patch = land.patch((0, 1199), (0, 1199));
        let mut counts = [0usize; 6];
        for v in (0..1200).step_by(3) {
            for u in (0..1200).step_by(3) {
                let c = patch.class(u, v);
                counts[if c == NODATA_CLASS { 5 } else { c as usize }] += 1;
            }
        }
        assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
        assert!(land.outside_swath(0, 1199) && !land.outside_swath(1199, 0));
    }

    #[test]
    fn areas_agree_where_they_overlap() {
        // Two areas sharing a band of rows and columns, as two tiles or two strips would.
        let land = Land::new(600);
        let clouds = Clouds::new(
            5,
            Cloudiness {
                cell: 300.0,
                chance: 0.8,
                radius: (40.0, 110.0),
            },
        );
        let a = Area::new(&land, &clouds, (300, 899), (0, 600));
        let b = Area::new(&land, &clouds, (590, 1300), (400, 620));
        let mut clouded = 0;
        for v in 400..=600 {
            for u in 590..=899 {
                let (p, q) = (a.pixel(u, v), b.pixel(u, v));
                assert_eq!(
                    (
                        p.class,
                        p.texture.to_bits(),
                        p.alpha.to_bits(),
                        p.shadow.to_bits()
                    ),
                    (
                        q.class,
                        q.texture.to_bits(),
                        q.alpha.to_bits(),
                        q.shadow.to_bits()
                    ),
                    "({u}, {v})"
                );
                clouded += usize::from(p.alpha > 0.0 || p.shadow > 0.0);
                // The columns an area skips have no cloud or shadow.
                let full = clouds.patch((u, u), (v, v));
                assert_eq!(p.alpha, full.alpha(u, v) as f32, "({u}, {v})");
                assert_eq!(p.shadow, full.shadow(u, v) as f32, "({u}, {v})");
            }
        }
        assert!(clouded > 100, "{clouded} pixels under clouds or shadows");
    }

    #[test]
    fn clouds_cover_about_what_their_lattice_says() {
        let clouds = Clouds::new(
            3,
            Cloudiness {
                cell: 300.0,
                chance: 0.8,
                radius: (40.0, 110.0),
            },
        );
        let patch = clouds.patch((0, 2999), (0, 2999));
        let (mut cloudy, mut n) = (0usize, 0usize);
        for v in (0..3000).step_by(7) {
            for u in (0..3000).step_by(7) {
                n += 1;
                if patch.alpha(u, v) > 0.5 {
                    cloudy += 1;
                }
            }
        }
        let share = cloudy as f64 / n as f64;
        assert!((0.05..0.4).contains(&share), "{share}");
    }
}

//! Deterministic randomness for the synthetic scene: a SplitMix64 generator (stable across
//! platforms and crate versions) and smooth value noise.

/// SplitMix64: tiny, fast, and its output never changes with a dependency upgrade.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Approximately standard normal (sum of four uniforms, rescaled): smooth enough for sensor
    /// noise and free of transcendental functions, so bit-identical everywhere.
    pub(crate) fn gaussish(&mut self) -> f64 {
        let s = self.uniform() + self.uniform() + self.uniform() + self.uniform();
        (s - 2.0) * (3.0f64).sqrt()
    }
}

/// Smooth 2-D value noise in [-1, 1]: random values on a lattice of spacing `cell` pixels,
/// interpolated with a smoothstep.
#[derive(Debug, Clone)]
pub(crate) struct ValueNoise {
    cell: f64,
    nx: usize,
    lattice: Vec<f64>,
}

impl ValueNoise {
    /// Noise over a `width x height` area with features about `cell` pixels wide.
    pub(crate) fn new(rng: &mut Rng, width: usize, height: usize, cell: f64) -> Self {
        let nx = (width as f64 / cell).ceil() as usize + 2;
        let ny = (height as f64 / cell).ceil() as usize + 2;
        let lattice = (0..nx * ny).map(|_| rng.uniform() * 2.0 - 1.0).collect();
        ValueNoise { cell, nx, lattice }
    }

    /// The noise at pixel `(x, y)` (fractional allowed).
    pub(crate) fn at(&self, x: f64, y: f64) -> f64 {
        let (fx, fy) = (x / self.cell, y / self.cell);
        let (ix, iy) = (fx.floor() as usize, fy.floor() as usize);
        let (tx, ty) = (smooth(fx - ix as f64), smooth(fy - iy as f64));
        let v = |i: usize, j: usize| self.lattice[j * self.nx + i];
        let top = v(ix, iy) * (1.0 - tx) + v(ix + 1, iy) * tx;
        let bottom = v(ix, iy + 1) * (1.0 - tx) + v(ix + 1, iy + 1) * tx;
        top * (1.0 - ty) + bottom * ty
    }
}

fn smooth(t: f64) -> f64 {
    t * t * (3.0 - 2.0 * t)
}

/// Fractal noise: `octaves` layers of [`ValueNoise`], each half the size and weight of the last;
/// roughly in [-1, 1].
#[derive(Debug, Clone)]
pub(crate) struct Fractal {
    layers: Vec<ValueNoise>,
}

impl Fractal {
    /// Fractal noise whose largest features are about `cell` pixels wide.
    pub(crate) fn new(
        rng: &mut Rng,
        width: usize,
        height: usize,
        cell: f64,
        octaves: usize,
    ) -> Self {
        let layers = (0..octaves)
            .map(|o| ValueNoise::new(rng, width, height, cell / (1 << o) as f64))
            .collect();
        Fractal { layers }
    }

    /// The noise at `(x, y)`.
    pub(crate) fn at(&self, x: f64, y: f64) -> f64 {
        let (mut sum, mut weight, mut norm) = (0.0, 1.0, 0.0);
        for l in &self.layers {
            sum += l.at(x, y) * weight;
            norm += weight;
            weight *= 0.5;
        }
        sum / norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_roughly_normal() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let n = 20000;
        let xs: Vec<f64> = (0..n).map(|_| a.gaussish()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }

    #[test]
    fn noise_is_smooth_and_bounded() {
        let mut rng = Rng::new(1);
        let f = Fractal::new(&mut rng, 100, 100, 32.0, 3);
        for y in 0..100 {
            for x in 0..99 {
                let (a, b) = (f.at(x as f64, y as f64), f.at(x as f64 + 1.0, y as f64));
                assert!(a.abs() <= 1.0 && (a - b).abs() < 0.3);
            }
        }
    }
}

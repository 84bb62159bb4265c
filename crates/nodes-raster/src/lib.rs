//! Raster node kinds of flow — `stack`, `mask-nodata`, `write` — and the synthetic Timberlea
//! Sentinel-2 scene that the demo and the tests run on.

mod error;
mod gdalx;
pub mod scene;

pub use error::RasterError;
pub use scene::{generate_timberlea, TimberleaProvider};

#[cfg(test)]
mod scene_stats {
    #[test]
    fn stats() {
        let dir = tempfile::tempdir().unwrap();
        let t = std::time::Instant::now();
        let p = crate::generate_timberlea(dir.path()).unwrap();
        eprintln!("gen {:?}", t.elapsed());
        let truth = crate::scene::truth();
        let mut counts = [0usize; 6];
        let mut aoi = [0usize; 6];
        for r in 0..crate::scene::HEIGHT { for c in 0..crate::scene::WIDTH {
            let v = truth.classes[r * crate::scene::WIDTH + c];
            let i = if v == 255 { 5 } else { v as usize };
            counts[i] += 1;
            if (110..338).contains(&c) && (105..312).contains(&r) { aoi[i] += 1; }
        }}
        eprintln!("scene {counts:?} aoi {aoi:?}");
        let items: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        for f in items["features"].as_array().unwrap() { eprintln!("{} {} {}", f["id"], f["properties"]["eo:cloud_cover"], f["bbox"]); }
        let out = std::process::Command::new("du").arg("-sh").arg(dir.path()).output().unwrap();
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

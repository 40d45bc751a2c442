//! Test support shared by zfvis's tests and its development harnesses
//! (`zfvis-dev fuzz | soak | bench-http`): `zfvis serve` as a child process,
//! and seeded mutations of image files. Nothing here ships in `zfvis`.

pub mod child;
pub mod mutations;

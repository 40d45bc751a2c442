//! Test support shared by zfvis's tests and its development harnesses
//! (`zfvis-dev fuzz | soak | bench-http`): `zfvis serve` as a child process,
//! seeded mutations of image files, and the helpers every test file
//! shares (`testing`). Nothing here ships in `zfvis`.

pub mod child;
pub mod mutations;
pub mod testing;

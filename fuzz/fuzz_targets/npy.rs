#![no_main]

// The harness lives in ztensor-formats so the regression tests run it too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ztensor_formats::fuzzing::run("npy", data);
});

//! Compiles the vendored ONNX schema (`proto/onnx.proto`, from the `onnx`
//! Python package) into Rust types with prost. `protox` parses the schema
//! in pure Rust, so no `protoc` binary is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "onnx")]
    onnx()?;
    Ok(())
}

#[cfg(feature = "onnx")]
fn onnx() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors = protox::compile(["onnx.proto"], ["proto"])?;
    prost_build::Config::new()
        // `raw_data` as `Bytes`: decoded from a `Bytes` over the file image,
        // it is a slice of that image, so its file offset is known (zero-copy).
        .bytes([".onnx.TensorProto.raw_data"])
        // The schema's comments are prose, not rustdoc (indented text would
        // become doctests).
        .disable_comments(["."])
        .compile_fds(descriptors)?;
    Ok(())
}

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let include = protoc_bin_vendored::include_path()?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos: [&str; 13] = [
        "marquee/type/v1/money.proto",
        "marquee/api/v1/annotations.proto",
        "marquee/booking/v1/booking.proto",
        "marquee/booking/v1/changes.proto",
        "marquee/booking/v1/admin.proto",
        "marquee/booking/v1/queue.proto",
        "marquee/booking/v1/auction.proto",
        "marquee/booking/v1/transfer.proto",
        "marquee/pay/v1/pay.proto",
        "marquee/saga/v1/saga.proto",
        "marquee/realtime/v1/realtime.proto",
        "marquee/search/v1/search.proto",
        "marquee/admin/v1/dead_letters.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=google/api");
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("marquee_descriptor.bin"))
        .compile_protos(&protos.map(PathBuf::from), &[PathBuf::from("."), include])?;
    Ok(())
}

/*
 * camux.h: the C ABI of the camux client (libcamux.so / libcamux.a, built
 * from capi/ with `cargo build --release`).
 *

 * A subscriber maps a stream's shared-memory ring read-only and receives
 * frames; a frame is *held* (the producer does not overwrite it) from
 * camux_recv() until camux_frame_release(). camux_frame_data() points
 * straight into the ring: no copy. That pointer, and every pointer derived
 * from it, is valid only until camux_frame_release() of that frame: copy
 * what you keep longer.
 *
 * Threads: one subscriber is used by one thread at a time. A frame may be
 * released on any thread, and after camux_close() of its subscriber.
 *
 * Errors: every function that can fail returns a camux_status; CAMUX_OK is
 * 0, positive values are events after which the stream goes on (timeout,
 * lag, a stale producer, a format change, the hold limit), negative values
 * are errors. camux_last_error() describes the last failure on the calling
 * thread. No function aborts the process: a Rust panic becomes
 * CAMUX_ERR_PANIC.
 *
 * Compiles as C11 and as C++ (extern "C"); no Rust types appear here.
 */
#ifndef CAMUX_H
#define CAMUX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI version of this header; camux_abi_version() returns the library's. */
#define CAMUX_ABI_VERSION 1u

/** Planes a frame may have (the ring format's limit). */
#define CAMUX_MAX_PLANES 4

/** Status codes (see the file comment). */
typedef enum camux_status {
    CAMUX_OK = 0,
    /** No frame within the timeout (or none ready, with timeout 0). */
    CAMUX_TIMEOUT = 1,
    /** An every-frame reader fell behind: camux_lagged() frames were
     * overwritten unread; the next camux_recv() returns the oldest left. */
    CAMUX_LAGGED = 2,
    /** The producer gave no sign of life for a while (reported once; keep
     * receiving to wait for its return). */
    CAMUX_STALE = 3,
    /** The ring was replaced by one of another format; the next frames
     * have the new one (see camux_frame_get_meta()). */
    CAMUX_FORMAT_CHANGED = 4,
    /** This reader already holds the most frames it may: release some. */
    CAMUX_HOLD_LIMIT = 5,
    /** A replaced ring could not be reopened yet. */
    CAMUX_REOPEN_FAILED = 6,

    /** A null pointer, a bad mode or a non-UTF-8 string was passed. */
    CAMUX_ERR_INVALID_ARGUMENT = -1,
    /** No ring file for this stream in this directory. */
    CAMUX_ERR_NOT_FOUND = -2,
    /** The stream name is not a valid file name. */
    CAMUX_ERR_INVALID_NAME = -3,
    /** The file is not a valid camux ring. */
    CAMUX_ERR_BAD_RING = -4,
    /** An OS error opening the ring. */
    CAMUX_ERR_IO = -5,
    /** The producer refused this reader for good. Fatal. */
    CAMUX_ERR_REFUSED = -6,
    /** The ring holds data that breaks the format. Fatal. */
    CAMUX_ERR_CORRUPT = -7,
    /** camux_frame_verify(): the synthetic stamp does not match the bytes. */
    CAMUX_ERR_VERIFY = -8,
    /** A bug inside camux (a Rust panic, caught). */
    CAMUX_ERR_PANIC = -9,
    /** Another error (camux_last_error() says which). */
    CAMUX_ERR_OTHER = -10
} camux_status;

/** Receive modes for camux_open(). */
typedef enum camux_mode {
    /** Every frame in order; falling behind gives CAMUX_LAGGED. */
    CAMUX_MODE_EVERY = 0,
    /** Only the newest frame at each receive (skipped ones are counted). */
    CAMUX_MODE_LATEST = 1
} camux_mode;

/** An open stream (opaque). */
typedef struct camux_subscriber camux_subscriber;

/** A held frame (opaque). */
typedef struct camux_frame camux_frame;

/** A frame's metadata, copied out by camux_frame_get_meta(). */
typedef struct camux_frame_meta {
    /** Ring sequence number (continues across producer restarts). */
    uint64_t seq;
    /** Capture and publish times: CLOCK_MONOTONIC and CLOCK_REALTIME ns. */
    uint64_t capture_mono_ns;
    uint64_t capture_real_ns;
    uint64_t publish_mono_ns;
    uint64_t publish_real_ns;
    /** The driver's frame counter. */
    uint64_t driver_seq;
    /** Payload length in bytes (what camux_frame_data() returns). */
    uint64_t length;
    /** Latest-only mode: frames skipped on purpose before this one. */
    uint64_t skipped;
    /** Nonzero on the first frame after a producer restart: the stream's
     * silence before it, in ns (at least 1). */
    uint64_t gap_ns;
    /** FourCC, little-endian ('Y' | 'U' << 8 | 'Y' << 16 | 'V' << 24). */
    uint32_t fourcc;
    uint32_t width;
    uint32_t height;
    /** Planes in use, and each one's bytes per line and offset. */
    uint32_t num_planes;
    uint32_t strides[CAMUX_MAX_PLANES];
    uint32_t plane_offsets[CAMUX_MAX_PLANES];
    /** Bits: 1 keyframe, 2 driver error. */
    uint32_t flags;
    /** V4L2 field order. */
    uint32_t field;
    /** Epoch of the producer that published it. */
    uint32_t epoch;
    /** Reserved, 0. */
    uint32_t reserved;
} camux_frame_meta;

/** The library's ABI version (CAMUX_ABI_VERSION of the header it was built with). */
uint32_t camux_abi_version(void);

/** Opens `stream` in `dir` (NULL: "/run/camux"), mapping its ring read-only.
 * On CAMUX_OK `*out` is a subscriber to pass to camux_close(). */
int camux_open(const char *dir, const char *stream, int mode, camux_subscriber **out);

/** Closes a subscriber (NULL is a no-op). Frames received from it stay
 * valid until released. */
void camux_close(camux_subscriber *sub);

/** Receives the next frame: waits at most `timeout_ms` (negative: forever,
 * 0: only a frame ready now). On CAMUX_OK `*out` is a held frame to pass to
 * camux_frame_release(); otherwise `*out` is NULL. */
int camux_recv(camux_subscriber *sub, int64_t timeout_ms, camux_frame **out);

/** Frames missed when camux_recv() last returned CAMUX_LAGGED (0 if never). */
uint64_t camux_lagged(const camux_subscriber *sub);

/** Copies the frame's metadata into `*out`. */
int camux_frame_get_meta(const camux_frame *frame, camux_frame_meta *out);

/** The payload, in the shared ring (no copy), read-only; its length in
 * `*len` if `len` is not NULL. Valid until camux_frame_release(frame).
 * NULL if `frame` is NULL. */
const uint8_t *camux_frame_data(const camux_frame *frame, size_t *len);

/** Checks a synthetic frame's stamp with camux's own code: the checksum
 * matches the bytes in the ring, the stamped seq is the frame's, and the
 * frame is still intact. CAMUX_OK or CAMUX_ERR_VERIFY. */
int camux_frame_verify(const camux_frame *frame);

/** 1 if the frame is exactly as published, 0 if the producer revoked the
 * hold (held past the ring's hold timeout), -1 if `frame` is NULL. */
int camux_frame_is_intact(const camux_frame *frame);

/** Releases the hold (NULL is a no-op): the producer may then reuse the
 * slot, and the frame's data pointer must not be used any more. */
void camux_frame_release(camux_frame *frame);

/** What the last failing call on this thread said (never NULL; "" if
 * nothing failed). Valid until the next camux call on this thread. */
const char *camux_last_error(void);

/** The name of a status code ("CAMUX_TIMEOUT"), never NULL. */
const char *camux_status_name(int status);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* CAMUX_H */

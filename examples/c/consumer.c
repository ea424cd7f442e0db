/*
 * The smallest useful C consumer: receive frames, read them in place,
 * check every synthetic frame twice (camux_frame_verify, camux's own code,
 * and an independent C implementation of the stamp below), release.
 *
 *   cargo build --release --manifest-path capi/Cargo.toml
 *   cc -std=c11 -Wall -Wextra -Werror -Iinclude examples/c/consumer.c \
 *      capi/target/release/libcamux.a -lpthread -ldl -lm -o consumer
 *   camux publish --dir /tmp/camux --stream cam0 &
 *   ./consumer /tmp/camux cam0 100
 *
 * Exit status: 0 when COUNT frames arrived and verified, 1 on an error,
 * 3 on a frame that failed verification.
 */
#include <camux.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(camux_frame_meta) == 136, "camux_frame_meta layout");

/* The synthetic stamp (src/source/stamp.rs): bytes 0..8 "CAMUXSYN", then
 * seq, length and the checksum of payload[32..length] seeded with seq, all
 * little-endian u64. */
static const uint64_t P1 = 0x9E3779B185EBCA87u, P2 = 0xC2B2AE3D27D4EB4Fu,
                      P3 = 0x165667B19E3779F9u, P4 = 0x85EBCA77C2B2AE63u,
                      P5 = 0x27D4EB2F165667C5u;

static uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t round1(uint64_t acc, uint64_t w) { return rotl(acc + w * P2, 31) * P1; }
static uint64_t merge(uint64_t h, uint64_t v) { return rotl(h ^ round1(0, v), 27) * P1 + P4; }

static uint64_t le(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t checksum(uint64_t seed, const uint8_t *d, size_t n) {
    uint64_t lanes[4] = {seed + P1 + P2, seed + P2, seed, seed - P1};
    size_t full = n / 32 * 32;
    for (size_t off = 0; off < full; off += 32)
        for (int i = 0; i < 4; i++) lanes[i] = round1(lanes[i], le(d + off + 8 * i, 8));
    uint64_t h = (seed + P5) ^ ((uint64_t)n * P3);
    for (int i = 0; i < 4; i++) h = merge(h, lanes[i]);
    for (size_t off = full; off < n; off += 8) h = merge(h, le(d + off, n - off));
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    return h ^ (h >> 32);
}

static int stamp_ok(const uint8_t *p, size_t len, uint64_t seq) {
    return len >= 32 && memcmp(p, "CAMUXSYN", 8) == 0 && le(p + 8, 8) == seq &&
           le(p + 16, 8) == len && le(p + 24, 8) == checksum(seq, p + 32, len - 32);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/run/camux";
    const char *stream = argc > 2 ? argv[2] : "cam0";
    long count = argc > 3 ? atol(argv[3]) : 100;

    camux_subscriber *sub;
    int rc = camux_open(dir, stream, CAMUX_MODE_EVERY, &sub);
    if (rc != CAMUX_OK) {
        fprintf(stderr, "camux_open: %s: %s\n", camux_status_name(rc), camux_last_error());
        return 1;
    }
    long seen = 0, verified = 0;
    while (seen < count) {
        camux_frame *frame;
        rc = camux_recv(sub, 10000, &frame);              /* futex sleep, no polling */
        if (rc == CAMUX_OK) {
            camux_frame_meta m;
            size_t len;
            const uint8_t *data = camux_frame_data(frame, &len); /* in the ring: no copy */
            camux_frame_get_meta(frame, &m);
            int ok = camux_frame_verify(frame) == CAMUX_OK && stamp_ok(data, len, m.seq);
            printf("#%" PRIu64 " %.4s %ux%u stride %u %zu bytes %s\n", m.seq, (const char *)&m.fourcc,
                   m.width, m.height, m.strides[0], len, ok ? "verified" : "TORN");
            camux_frame_release(frame);                    /* data is invalid from here on */
            seen++;
            if (!ok) {
                fprintf(stderr, "frame %" PRIu64 " failed verification: %s\n", m.seq, camux_last_error());
                camux_close(sub);
                return 3;
            }
            verified++;
        } else if (rc == CAMUX_LAGGED) {
            fprintf(stderr, "fell behind: %" PRIu64 " frames missed\n", camux_lagged(sub));
        } else if (rc < 0 || rc == CAMUX_TIMEOUT) {
            fprintf(stderr, "camux_recv: %s: %s\n", camux_status_name(rc), camux_last_error());
            camux_close(sub);
            return 1;
        } else {
            fprintf(stderr, "%s\n", camux_last_error());  /* stale producer, format change */
        }
    }
    camux_close(sub);
    printf("%ld frames, %ld verified\n", seen, verified);
    return 0;
}

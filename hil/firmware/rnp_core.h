/*
 * rnp_core.h - protocol core of the RNP reference firmware (plain C99, no Arduino headers).
 *
 * RNP (Rover Node Protocol) is specified byte by byte in drivers/PROTOCOL.md; the Python side
 * is drivers/rnp_codec.py. This core does framing (COBS, 0x00 delimiters), CRC-16/XMODEM,
 * frame parse/build, the message handlers and the firmware watchdog. It never reads a clock:
 * every entry point that needs time takes now_ms (a free-running millisecond counter that may
 * wrap at 2^32, e.g. Arduino millis()). No dynamic memory; one rnp_device_t holds all state.
 *
 * Typical loop (see rnp_firmware.ino):
 *     n = read available serial bytes into buf;
 *     w = rnp_device_rx(&dev, buf, n, millis(), out, sizeof out);   -> write out[0..w) to serial
 *     rnp_device_tick(&dev, millis());                               -> watchdog
 *     rnp_device_set_sensors(&dev, counts, speeds, currents, battery_mv, hw_faults);
 *     moving = rnp_device_targets(&dev, targets);                    -> drive the motors
 *
 * Lengths returned as int are small (< 32768) so the API also fits 16-bit int targets (AVR).
 */
#ifndef RNP_CORE_H
#define RNP_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RNP_PROTOCOL_VERSION 1u
#define RNP_MAX_WHEELS 8u
#define RNP_HEADER_LEN 4u            /* version, type, seq (u16 LE) */
#define RNP_CRC_LEN 2u
#define RNP_MAX_BODY 128u            /* header + payload + CRC */
#define RNP_MAX_PAYLOAD (RNP_MAX_BODY - RNP_HEADER_LEN - RNP_CRC_LEN)
#define RNP_MAX_ENCODED (RNP_MAX_BODY + RNP_MAX_BODY / 254u + 1u)  /* COBS bound, no delimiter */
#define RNP_MAX_WIRE (RNP_MAX_ENCODED + 1u)                        /* with the 0x00 delimiter */

#define RNP_WATCHDOG_MIN_MS 50u
#define RNP_WATCHDOG_MAX_MS 10000u
#define RNP_WATCHDOG_DEFAULT_MS 500u

/* message types: host->device 0x01-0x7F, device->host 0x80-0xFF */
enum {
    RNP_HELLO = 0x01, RNP_SET_WHEELS = 0x02, RNP_SET_WATCHDOG = 0x03, RNP_HEARTBEAT = 0x04,
    RNP_ESTOP = 0x05, RNP_ARM = 0x06, RNP_DISARM = 0x07, RNP_RESET_ENCODERS = 0x08,
    RNP_INFO = 0x81, RNP_TELEMETRY = 0x82, RNP_ACK = 0x83, RNP_NACK = 0x84
};

/* NACK codes */
enum {
    RNP_NACK_BAD_VERSION = 1, RNP_NACK_UNKNOWN_TYPE = 2, RNP_NACK_BAD_LENGTH = 3,
    RNP_NACK_OUT_OF_RANGE = 4, RNP_NACK_WHEEL_COUNT = 5, RNP_NACK_NOT_ARMED = 6,
    RNP_NACK_ESTOPPED = 7, RNP_NACK_NEED_HELLO = 8
};

/* TELEMETRY fault bits; the core owns the first three, the application the others */
#define RNP_FAULT_WATCHDOG 0x0001u
#define RNP_FAULT_ESTOP 0x0002u
#define RNP_FAULT_REBOOTED 0x0004u
#define RNP_FAULT_OVERCURRENT 0x0008u
#define RNP_FAULT_BATTERY_LOW 0x0010u
#define RNP_FAULT_DRIVER_FAULT 0x0020u
#define RNP_FAULT_ENCODER_FAULT 0x0040u
#define RNP_FAULT_OVERTEMP 0x0080u
#define RNP_FAULT_HARDWARE_MASK 0x00F8u

/* TELEMETRY state bits */
#define RNP_STATE_ARMED 0x01u
#define RNP_STATE_DRIVING 0x02u

/* INFO capability bits */
#define RNP_CAP_CURRENT_SENSE 0x0001u
#define RNP_CAP_BATTERY_SENSE 0x0002u
#define RNP_CAP_CLOSED_LOOP 0x0004u
#define RNP_CAP_HW_ESTOP 0x0008u

/* return codes (negative) */
#define RNP_OK 0
#define RNP_ERR_COBS (-1)      /* empty frame, 0x00 inside, or truncated block */
#define RNP_ERR_SHORT (-2)     /* body shorter than header + CRC */
#define RNP_ERR_LONG (-3)      /* body longer than RNP_MAX_BODY */
#define RNP_ERR_CRC (-4)
#define RNP_ERR_SPACE (-5)     /* output buffer too small */
#define RNP_ERR_CONFIG (-6)

/* ---- CRC-16/XMODEM: poly 0x1021, init 0 (pass 0 to start), no reflection, no xor-out ---- */
uint16_t rnp_crc16(const uint8_t *data, size_t len, uint16_t crc);

/* ---- COBS ----
 * rnp_cobs_encode: encoded length (no delimiter written), or 0 if cap is too small.
 * rnp_cobs_decode: decoded length, or RNP_ERR_COBS / RNP_ERR_SPACE. src must not contain 0x00. */
size_t rnp_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap);
int rnp_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap);

/* ---- frames ---- */
typedef struct {
    uint8_t version;
    uint8_t type;
    uint16_t seq;
    uint8_t payload_len;      /* payload starts at body + RNP_HEADER_LEN */
} rnp_header_t;

/* Check length and CRC of a decoded body and fill *hdr. RNP_OK, RNP_ERR_SHORT, _LONG or _CRC.
 * The version is reported, not checked (the device NACKs a wrong one). */
int rnp_frame_parse(const uint8_t *body, size_t len, rnp_header_t *hdr);

/* Build the wire bytes of one frame (COBS + trailing 0x00) with version RNP_PROTOCOL_VERSION.
 * Returns the byte count, or 0 if the payload is too long or cap too small. payload may be
 * NULL when n == 0; it must not overlap out. */
size_t rnp_frame_build(uint8_t type, uint16_t seq, const uint8_t *payload, size_t n, uint8_t *out,
                       size_t cap);

/* ---- device ---- */
typedef struct {
    uint8_t fw_major, fw_minor, fw_patch;
    uint8_t n_wheels;            /* 1..RNP_MAX_WHEELS */
    uint16_t capabilities;       /* RNP_CAP_* */
    uint32_t counts_per_rev;     /* encoder counts per wheel revolution */
    int32_t max_speed_cps;       /* > 0; larger SET_WHEELS targets are NACKed OUT_OF_RANGE */
} rnp_config_t;

typedef struct {
    rnp_config_t cfg;
    /* receiver */
    uint8_t rx_buf[RNP_MAX_ENCODED];
    uint16_t rx_len;
    uint8_t rx_discarding;       /* dropping an oversize frame until the next 0x00 */
    uint16_t rx_errors;          /* frames dropped silently (COBS, length, CRC, oversize); wraps */
    uint16_t tx_dropped;         /* replies that did not fit the caller's output buffer */
    /* session */
    uint16_t tx_seq;
    uint16_t flags;              /* RNP_FAULT_WATCHDOG | _ESTOP | _REBOOTED */
    uint16_t hw_faults;          /* application bits (RNP_FAULT_HARDWARE_MASK) */
    uint8_t armed, estop, fresh;
    uint16_t watchdog_ms;
    uint32_t last_feed_ms;
    int32_t target_cps[RNP_MAX_WHEELS];
    /* sensors, written by the application */
    uint32_t raw_counts[RNP_MAX_WHEELS];
    uint32_t count_offset[RNP_MAX_WHEELS];
    int32_t speed_cps[RNP_MAX_WHEELS];
    int16_t current_ma[RNP_MAX_WHEELS];
    uint16_t battery_mv;
} rnp_device_t;

/* Boot state: disarmed, REBOOTED set, watchdog RNP_WATCHDOG_DEFAULT_MS, targets zero.
 * Returns RNP_OK or RNP_ERR_CONFIG (n_wheels or max_speed_cps invalid; the device then stays
 * disarmed and refuses to arm). */
int rnp_device_init(rnp_device_t *dev, const rnp_config_t *cfg, uint32_t now_ms);

/* Feed received bytes (any chunking). Each complete frame is handled at time now_ms and its
 * reply (at most one per frame) appended to out. Returns the number of bytes written. */
size_t rnp_device_rx(rnp_device_t *dev, const uint8_t *data, size_t n, uint32_t now_ms, uint8_t *out,
                     size_t cap);

/* Watchdog: when armed and no SET_WHEELS/HEARTBEAT was accepted for watchdog_ms, the targets
 * go to zero and RNP_FAULT_WATCHDOG latches until a SET_WHEELS (or ARM) is accepted. */
void rnp_device_tick(rnp_device_t *dev, uint32_t now_ms);

/* Hardware e-stop input: same effect as an ESTOP message. */
void rnp_device_estop(rnp_device_t *dev);

/* Latest sensor values (arrays of cfg.n_wheels; NULL leaves a group unchanged). counts are the
 * raw, wrapping encoder counters; hw_faults uses RNP_FAULT_HARDWARE_MASK bits. */
void rnp_device_set_sensors(rnp_device_t *dev, const int32_t *counts, const int32_t *speeds_cps,
                            const int16_t *currents_ma, uint16_t battery_mv, uint16_t hw_faults);

/* Copy the cfg.n_wheels speed targets (counts/s) to out; returns 1 if the motors may turn
 * (armed and a fresh SET_WHEELS in force), else 0 (and the targets are all zero). */
int rnp_device_targets(const rnp_device_t *dev, int32_t *out);

uint16_t rnp_device_faults(const rnp_device_t *dev);
uint8_t rnp_device_state(const rnp_device_t *dev);
size_t rnp_device_size(void);

#ifdef __cplusplus
}
#endif

#endif /* RNP_CORE_H */

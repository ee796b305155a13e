/*
 * rnp_core.c - protocol core of the RNP reference firmware. See rnp_core.h and
 * drivers/PROTOCOL.md. Plain C99; compiles with
 *     gcc -std=c99 -Wall -Wextra -Werror -O2 -shared -fPIC rnp_core.c
 * and with avr-gcc / arm-none-eabi-gcc for boards.
 */
#include "rnp_core.h"

#include <string.h>

/* ------------------------------------------------------------------ little-endian helpers */
static void wr_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

static void wr_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

static uint16_t rd_u16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] | (uint16_t)((uint16_t)p[1] << 8));
}

static uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* two's complement reinterpretation without implementation-defined conversions */
static int32_t u32_to_s32(uint32_t u)
{
    if (u & 0x80000000u) {
        return -(int32_t)(~u) - 1;
    }
    return (int32_t)u;
}

/* ------------------------------------------------------------------ CRC-16/XMODEM */
uint16_t rnp_crc16(const uint8_t *data, size_t len, uint16_t crc)
{
    size_t i;
    for (i = 0; i < len; i++) {
        uint8_t bit;
        crc = (uint16_t)(crc ^ (uint16_t)((uint16_t)data[i] << 8));
        for (bit = 0; bit < 8u; bit++) {
            if (crc & 0x8000u) {
                crc = (uint16_t)((uint16_t)(crc << 1) ^ 0x1021u);
            } else {
                crc = (uint16_t)(crc << 1);
            }
        }
    }
    return crc;
}

/* ------------------------------------------------------------------ COBS */
size_t rnp_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    size_t in = 0, out = 0;
    for (;;) {
        /* one block: a code byte, then up to 254 non-zero bytes */
        size_t run = 0;
        while (in + run < len && run < 254u && src[in + run] != 0u) {
            run++;
        }
        if (out + 1u + run > cap) {
            return 0;
        }
        dst[out] = (uint8_t)(run + 1u);
        if (run > 0u) {
            memcpy(dst + out + 1u, src + in, run);
        }
        out += 1u + run;
        in += run;
        if (run == 254u) {          /* full block: no zero implied */
            if (in == len) {
                break;              /* input ended exactly here: nothing more */
            }
            continue;
        }
        if (in == len) {            /* final block ended by the end of input */
            break;
        }
        in++;                       /* the block ended at a zero byte: consume it */
    }
    return out;
}

int rnp_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    size_t in = 0, out = 0;
    if (len == 0u) {
        return RNP_ERR_COBS;
    }
    while (in < len) {
        uint8_t code = src[in];
        size_t k;
        if (code == 0u) {
            return RNP_ERR_COBS;
        }
        if ((size_t)code - 1u > len - in - 1u) {
            return RNP_ERR_COBS;                /* block runs past the end: truncated */
        }
        in++;
        for (k = 1; k < code; k++) {
            if (src[in] == 0u) {
                return RNP_ERR_COBS;
            }
            if (out >= cap) {
                return RNP_ERR_SPACE;
            }
            dst[out++] = src[in++];
        }
        if (code != 0xFFu && in < len) {
            if (out >= cap) {
                return RNP_ERR_SPACE;
            }
            dst[out++] = 0u;
        }
    }
    return (int)out;
}

/* ------------------------------------------------------------------ frames */
int rnp_frame_parse(const uint8_t *body, size_t len, rnp_header_t *hdr)
{
    uint16_t got;
    if (len < RNP_HEADER_LEN + RNP_CRC_LEN) {
        return RNP_ERR_SHORT;
    }
    if (len > RNP_MAX_BODY) {
        return RNP_ERR_LONG;
    }
    got = rd_u16(body + len - RNP_CRC_LEN);
    if (rnp_crc16(body, len - RNP_CRC_LEN, 0u) != got) {
        return RNP_ERR_CRC;
    }
    hdr->version = body[0];
    hdr->type = body[1];
    hdr->seq = rd_u16(body + 2);
    hdr->payload_len = (uint8_t)(len - RNP_HEADER_LEN - RNP_CRC_LEN);
    return RNP_OK;
}

size_t rnp_frame_build(uint8_t type, uint16_t seq, const uint8_t *payload, size_t n, uint8_t *out,
                       size_t cap)
{
    uint8_t body[RNP_MAX_BODY];
    size_t blen, w;
    if (n > RNP_MAX_PAYLOAD) {
        return 0;
    }
    body[0] = (uint8_t)RNP_PROTOCOL_VERSION;
    body[1] = type;
    wr_u16(body + 2, seq);
    if (n > 0u) {
        memcpy(body + RNP_HEADER_LEN, payload, n);
    }
    blen = RNP_HEADER_LEN + n;
    wr_u16(body + blen, rnp_crc16(body, blen, 0u));
    blen += RNP_CRC_LEN;
    if (cap < 1u) {
        return 0;
    }
    w = rnp_cobs_encode(body, blen, out, cap - 1u);
    if (w == 0u) {
        return 0;
    }
    out[w] = 0u;
    return w + 1u;
}

/* ------------------------------------------------------------------ device */
static void stop_motion(rnp_device_t *d)
{
    uint8_t i;
    for (i = 0; i < RNP_MAX_WHEELS; i++) {
        d->target_cps[i] = 0;
    }
    d->fresh = 0;
}

static int config_ok(const rnp_config_t *c)
{
    return c->n_wheels >= 1u && c->n_wheels <= RNP_MAX_WHEELS && c->max_speed_cps > 0;
}

int rnp_device_init(rnp_device_t *d, const rnp_config_t *cfg, uint32_t now_ms)
{
    memset(d, 0, sizeof *d);
    d->cfg = *cfg;
    d->flags = RNP_FAULT_REBOOTED;
    d->watchdog_ms = (uint16_t)RNP_WATCHDOG_DEFAULT_MS;
    d->last_feed_ms = now_ms;
    if (!config_ok(cfg)) {
        d->cfg.n_wheels = 1;        /* keep every loop bounded; the device never arms */
        return RNP_ERR_CONFIG;
    }
    return RNP_OK;
}

void rnp_device_tick(rnp_device_t *d, uint32_t now_ms)
{
    if (d->armed && !(d->flags & RNP_FAULT_WATCHDOG)
        && (uint32_t)(now_ms - d->last_feed_ms) >= (uint32_t)d->watchdog_ms) {
        stop_motion(d);
        d->flags = (uint16_t)(d->flags | RNP_FAULT_WATCHDOG);
    }
}

void rnp_device_estop(rnp_device_t *d)
{
    stop_motion(d);
    d->armed = 0;
    d->estop = 1;
    d->flags = (uint16_t)(d->flags | RNP_FAULT_ESTOP);
}

void rnp_device_set_sensors(rnp_device_t *d, const int32_t *counts, const int32_t *speeds_cps,
                            const int16_t *currents_ma, uint16_t battery_mv, uint16_t hw_faults)
{
    uint8_t i;
    for (i = 0; i < d->cfg.n_wheels; i++) {
        if (counts) {
            d->raw_counts[i] = (uint32_t)counts[i];   /* modulo 2^32, well defined */
        }
        if (speeds_cps) {
            d->speed_cps[i] = speeds_cps[i];
        }
        if (currents_ma) {
            d->current_ma[i] = currents_ma[i];
        }
    }
    d->battery_mv = battery_mv;
    d->hw_faults = (uint16_t)(hw_faults & RNP_FAULT_HARDWARE_MASK);
}

int rnp_device_targets(const rnp_device_t *d, int32_t *out)
{
    uint8_t i;
    int moving = d->armed && d->fresh;
    for (i = 0; i < d->cfg.n_wheels; i++) {
        out[i] = moving ? d->target_cps[i] : 0;
    }
    return moving;
}

uint16_t rnp_device_faults(const rnp_device_t *d)
{
    return (uint16_t)(d->flags | d->hw_faults);
}

uint8_t rnp_device_state(const rnp_device_t *d)
{
    uint8_t s = 0;
    if (d->armed) {
        s = (uint8_t)(s | RNP_STATE_ARMED);
        if (d->fresh) {
            s = (uint8_t)(s | RNP_STATE_DRIVING);
        }
    }
    return s;
}

size_t rnp_device_size(void)
{
    return sizeof(rnp_device_t);
}

static size_t send(rnp_device_t *d, uint8_t type, const uint8_t *payload, size_t n, uint8_t *out, size_t cap)
{
    size_t w = out ? rnp_frame_build(type, d->tx_seq, payload, n, out, cap) : 0u;
    if (w) {
        d->tx_seq++;
    } else {
        d->tx_dropped++;
    }
    return w;
}

static size_t send_ack(rnp_device_t *d, const rnp_header_t *h, uint8_t *out, size_t cap)
{
    uint8_t p[3];
    wr_u16(p, h->seq);
    p[2] = h->type;
    return send(d, RNP_ACK, p, sizeof p, out, cap);
}

static size_t send_nack(rnp_device_t *d, const rnp_header_t *h, uint8_t code, uint8_t detail, uint8_t *out,
                        size_t cap)
{
    uint8_t p[5];
    wr_u16(p, h->seq);
    p[2] = h->type;
    p[3] = code;
    p[4] = detail;
    return send(d, RNP_NACK, p, sizeof p, out, cap);
}

static size_t send_info(rnp_device_t *d, const rnp_header_t *h, uint8_t *out, size_t cap)
{
    uint8_t p[19];
    wr_u16(p, h->seq);
    p[2] = (uint8_t)RNP_PROTOCOL_VERSION;
    p[3] = d->cfg.fw_major;
    p[4] = d->cfg.fw_minor;
    p[5] = d->cfg.fw_patch;
    p[6] = d->cfg.n_wheels;
    wr_u16(p + 7, d->cfg.capabilities);
    wr_u32(p + 9, d->cfg.counts_per_rev);
    wr_u32(p + 13, (uint32_t)d->cfg.max_speed_cps);
    wr_u16(p + 17, d->watchdog_ms);
    return send(d, RNP_INFO, p, sizeof p, out, cap);
}

static size_t send_telemetry(rnp_device_t *d, const rnp_header_t *h, uint32_t now_ms, uint8_t *out, size_t cap)
{
    uint8_t p[14u + 10u * RNP_MAX_WHEELS];
    uint8_t i, n = d->cfg.n_wheels;
    size_t k = 10;
    wr_u16(p, h->seq);
    wr_u32(p + 2, now_ms);
    wr_u16(p + 6, rnp_device_faults(d));
    p[8] = rnp_device_state(d);
    p[9] = n;
    for (i = 0; i < n; i++, k += 4u) {
        wr_u32(p + k, (uint32_t)(d->raw_counts[i] - d->count_offset[i]));
    }
    for (i = 0; i < n; i++, k += 4u) {
        wr_u32(p + k, (uint32_t)d->speed_cps[i]);
    }
    for (i = 0; i < n; i++, k += 2u) {
        wr_u16(p + k, (uint16_t)d->current_ma[i]);
    }
    wr_u16(p + k, d->battery_mv);
    wr_u16(p + k + 2u, d->rx_errors);
    k += 4u;
    return send(d, RNP_TELEMETRY, p, k, out, cap);
}

/* Handle one CRC-valid frame; the order of checks is the one in drivers/PROTOCOL.md. */
static size_t dispatch(rnp_device_t *d, const rnp_header_t *h, const uint8_t *p, uint32_t now_ms, uint8_t *out,
                       size_t cap)
{
    uint8_t n = h->payload_len, i;
    if (h->version != RNP_PROTOCOL_VERSION) {
        return send_nack(d, h, RNP_NACK_BAD_VERSION, (uint8_t)RNP_PROTOCOL_VERSION, out, cap);
    }
    switch (h->type) {
    case RNP_HELLO:
        if (n != 1u) {
            return send_nack(d, h, RNP_NACK_BAD_LENGTH, 1u, out, cap);
        }
        if (p[0] != RNP_PROTOCOL_VERSION) {
            return send_nack(d, h, RNP_NACK_BAD_VERSION, (uint8_t)RNP_PROTOCOL_VERSION, out, cap);
        }
        stop_motion(d);
        d->armed = 0;
        d->flags = (uint16_t)(d->flags & ~RNP_FAULT_REBOOTED);
        return send_info(d, h, out, cap);

    case RNP_SET_WHEELS: {
        uint8_t nw = d->cfg.n_wheels;
        int32_t v[RNP_MAX_WHEELS];
        if (n < 1u || (uint16_t)n != (uint16_t)(1u + 4u * (uint16_t)p[0])) {
            return send_nack(d, h, RNP_NACK_BAD_LENGTH, (uint8_t)(1u + 4u * nw), out, cap);
        }
        if (p[0] != nw) {
            return send_nack(d, h, RNP_NACK_WHEEL_COUNT, nw, out, cap);
        }
        for (i = 0; i < nw; i++) {
            v[i] = u32_to_s32(rd_u32(p + 1u + 4u * i));
            if (v[i] > d->cfg.max_speed_cps || v[i] < -d->cfg.max_speed_cps) {
                return send_nack(d, h, RNP_NACK_OUT_OF_RANGE, i, out, cap);
            }
        }
        if (d->estop) {
            return send_nack(d, h, RNP_NACK_ESTOPPED, 0u, out, cap);
        }
        if (!d->armed) {
            return send_nack(d, h, RNP_NACK_NOT_ARMED, 0u, out, cap);
        }
        for (i = 0; i < nw; i++) {
            d->target_cps[i] = v[i];
        }
        d->fresh = 1;
        d->flags = (uint16_t)(d->flags & ~RNP_FAULT_WATCHDOG);
        d->last_feed_ms = now_ms;
        return send_telemetry(d, h, now_ms, out, cap);
    }

    case RNP_SET_WATCHDOG: {
        uint16_t ms;
        if (n != 2u) {
            return send_nack(d, h, RNP_NACK_BAD_LENGTH, 2u, out, cap);
        }
        ms = rd_u16(p);
        if (ms < RNP_WATCHDOG_MIN_MS || ms > RNP_WATCHDOG_MAX_MS) {
            return send_nack(d, h, RNP_NACK_OUT_OF_RANGE, 0u, out, cap);
        }
        d->watchdog_ms = ms;
        return send_ack(d, h, out, cap);
    }

    case RNP_HEARTBEAT:
        if (n != 0u) {
            return send_nack(d, h, RNP_NACK_BAD_LENGTH, 0u, out, cap);
        }
        d->last_feed_ms = now_ms;
        return send_telemetry(d, h, now_ms, out, cap);

    case RNP_ESTOP:
    case RNP_ARM:
    case RNP_DISARM:
    case RNP_RESET_ENCODERS:
        if (n != 0u) {
            return send_nack(d, h, RNP_NACK_BAD_LENGTH, 0u, out, cap);
        }
        if (h->type == RNP_ESTOP) {
            rnp_device_estop(d);
        } else if (h->type == RNP_ARM) {
            if ((d->flags & RNP_FAULT_REBOOTED) || !config_ok(&d->cfg)) {
                return send_nack(d, h, RNP_NACK_NEED_HELLO, 0u, out, cap);
            }
            stop_motion(d);
            d->estop = 0;
            d->armed = 1;
            d->flags = (uint16_t)(d->flags & ~(RNP_FAULT_ESTOP | RNP_FAULT_WATCHDOG));
            d->last_feed_ms = now_ms;
        } else if (h->type == RNP_DISARM) {
            stop_motion(d);
            d->armed = 0;
        } else {
            for (i = 0; i < d->cfg.n_wheels; i++) {
                d->count_offset[i] = d->raw_counts[i];
            }
        }
        return send_ack(d, h, out, cap);

    default:
        return send_nack(d, h, RNP_NACK_UNKNOWN_TYPE, 0u, out, cap);
    }
}

static size_t handle_frame(rnp_device_t *d, uint32_t now_ms, uint8_t *out, size_t cap)
{
    uint8_t body[RNP_MAX_BODY];
    rnp_header_t h;
    int len = rnp_cobs_decode(d->rx_buf, d->rx_len, body, sizeof body);
    if (len < 0 || rnp_frame_parse(body, (size_t)len, &h) != RNP_OK) {
        d->rx_errors++;
        return 0;
    }
    rnp_device_tick(d, now_ms);   /* a late frame cannot hide an elapsed timeout */
    return dispatch(d, &h, body + RNP_HEADER_LEN, now_ms, out, cap);
}

size_t rnp_device_rx(rnp_device_t *d, const uint8_t *data, size_t n, uint32_t now_ms, uint8_t *out, size_t cap)
{
    size_t i, written = 0;
    for (i = 0; i < n; i++) {
        uint8_t b = data[i];
        if (b == 0u) {
            if (d->rx_discarding) {
                d->rx_discarding = 0;
            } else if (d->rx_len > 0u) {
                written += handle_frame(d, now_ms, out ? out + written : out, cap - written);
            }
            d->rx_len = 0;
        } else if (!d->rx_discarding) {
            if (d->rx_len < RNP_MAX_ENCODED) {
                d->rx_buf[d->rx_len++] = b;
            } else {                       /* oversize: drop until the next delimiter */
                d->rx_discarding = 1;
                d->rx_len = 0;
                d->rx_errors++;
            }
        }
    }
    return written;
}

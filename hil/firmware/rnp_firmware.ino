// rnp_firmware.ino - reference RNP firmware sketch for a two-wheel differential rover.
//
// Shows how a board uses the protocol core (rnp_core.c / rnp_core.h in this folder; the Arduino IDE
// compiles both with the sketch). Everything protocol- and safety-related lives in the core: framing,
// CRC, message handling, arming, e-stop latch and the watchdog. This file only moves bytes, reads the
// sensors and drives the motors. Not compiled by the test suite; adapt the pins and the motor driver.
//
// Hardware assumed: an H-bridge with PWM + DIR per motor (L298N / TB6612-style), quadrature encoders
// with channel A on interrupt pins, an active-low e-stop switch, a battery divider on A0.

#include "rnp_core.h"

static const uint8_t N_WHEELS = 2;                     // wheel 0 = left, wheel 1 = right
static const uint8_t PWM_PIN[N_WHEELS] = {5, 6};
static const uint8_t DIR_PIN[N_WHEELS] = {7, 8};
static const uint8_t ENC_A_PIN[N_WHEELS] = {2, 3};     // external interrupts on an Uno/Nano
static const uint8_t ENC_B_PIN[N_WHEELS] = {4, 9};
static const uint8_t ESTOP_PIN = 10;                   // LOW = pressed
static const uint8_t BATTERY_PIN = A0;
static const float BATTERY_MV_PER_COUNT = 14.65f;      // 5 V ref, 1/3 divider: (5000 / 1023) * 3

static const uint32_t COUNTS_PER_REV = 1440;           // encoder counts per wheel revolution
static const int32_t MAX_SPEED_CPS = 3000;             // fastest wheel speed the drive can hold
static const uint32_t CONTROL_PERIOD_MS = 20;          // speed loop at 50 Hz
static const float KP = 0.05f, KI = 0.5f;              // PWM per (count/s) and per count

static rnp_device_t dev;
static volatile int32_t enc_count[N_WHEELS];
static int32_t last_count[N_WHEELS];
static float integ[N_WHEELS];
static uint32_t last_control_ms;

static void enc_isr0(void) { enc_count[0] += digitalRead(ENC_B_PIN[0]) ? -1 : 1; }
static void enc_isr1(void) { enc_count[1] += digitalRead(ENC_B_PIN[1]) ? 1 : -1; }   // mirrored side

static void set_motor(uint8_t i, float pwm)
{
    if (pwm > 255.0f) pwm = 255.0f;
    if (pwm < -255.0f) pwm = -255.0f;
    digitalWrite(DIR_PIN[i], pwm >= 0.0f ? HIGH : LOW);
    analogWrite(PWM_PIN[i], (int)(pwm >= 0.0f ? pwm : -pwm));
}

void setup()
{
    rnp_config_t cfg;
    for (uint8_t i = 0; i < N_WHEELS; i++) {
        pinMode(PWM_PIN[i], OUTPUT);
        pinMode(DIR_PIN[i], OUTPUT);
        pinMode(ENC_A_PIN[i], INPUT_PULLUP);
        pinMode(ENC_B_PIN[i], INPUT_PULLUP);
        set_motor(i, 0.0f);
    }
    pinMode(ESTOP_PIN, INPUT_PULLUP);
    attachInterrupt(digitalPinToInterrupt(ENC_A_PIN[0]), enc_isr0, RISING);
    attachInterrupt(digitalPinToInterrupt(ENC_A_PIN[1]), enc_isr1, RISING);

    cfg.fw_major = 1;
    cfg.fw_minor = 0;
    cfg.fw_patch = 0;
    cfg.n_wheels = N_WHEELS;
    cfg.capabilities = RNP_CAP_BATTERY_SENSE | RNP_CAP_CLOSED_LOOP | RNP_CAP_HW_ESTOP;
    cfg.counts_per_rev = COUNTS_PER_REV;
    cfg.max_speed_cps = MAX_SPEED_CPS;
    rnp_device_init(&dev, &cfg, millis());

    Serial.begin(115200);
    last_control_ms = millis();
}

void loop()
{
    // At most 16 bytes per pass: the shortest frame is 8 bytes on the wire, so one pass completes at most two
    // frames and their replies always fit out[] (a reply that does not fit would be dropped). 16 bytes take
    // 1.4 ms at 115200 baud; the loop is much faster, so the UART's 64-byte buffer never overflows.
    static uint8_t in[16];
    static uint8_t out[2 * RNP_MAX_WIRE];
    size_t n = 0;
    uint32_t now;

    // 1. bytes in -> replies out (the core answers each valid frame exactly once)
    while (Serial.available() > 0 && n < sizeof in) {
        in[n++] = (uint8_t)Serial.read();
    }
    now = millis();
    if (n > 0) {
        size_t w = rnp_device_rx(&dev, in, n, now, out, sizeof out);
        if (w > 0) {
            Serial.write(out, w);
        }
    }

    // 2. safety: hardware e-stop input and the watchdog, every pass
    if (digitalRead(ESTOP_PIN) == LOW) {
        rnp_device_estop(&dev);
    }
    rnp_device_tick(&dev, now);

    // 3. sensors and the speed loop at a fixed rate
    if ((uint32_t)(now - last_control_ms) >= CONTROL_PERIOD_MS) {
        int32_t counts[N_WHEELS], speed[N_WHEELS], target[N_WHEELS];
        int16_t current[N_WHEELS] = {0, 0};
        float dt = (float)(uint32_t)(now - last_control_ms) * 0.001f;
        int moving;
        last_control_ms = now;
        noInterrupts();
        for (uint8_t i = 0; i < N_WHEELS; i++) {
            counts[i] = enc_count[i];
        }
        interrupts();
        for (uint8_t i = 0; i < N_WHEELS; i++) {
            speed[i] = (int32_t)((float)(int32_t)((uint32_t)counts[i] - (uint32_t)last_count[i]) / dt);
            last_count[i] = counts[i];
        }
        rnp_device_set_sensors(&dev, counts, speed, current,
                               (uint16_t)(analogRead(BATTERY_PIN) * BATTERY_MV_PER_COUNT), 0);

        moving = rnp_device_targets(&dev, target);     // all zero unless armed with a fresh SET_WHEELS
        for (uint8_t i = 0; i < N_WHEELS; i++) {
            if (!moving) {
                integ[i] = 0.0f;
                set_motor(i, 0.0f);
                continue;
            }
            float err = (float)(target[i] - speed[i]);
            integ[i] += KI * err * dt;
            if (integ[i] > 255.0f) integ[i] = 255.0f;
            if (integ[i] < -255.0f) integ[i] = -255.0f;
            set_motor(i, KP * err + integ[i]);
        }
    }
}

#!/usr/bin/env python3
"""Subscribers and a QoS 1 publisher through moat, for the rotation tests.

Usage: rotation_load.py PORT CAFILE SUBSCRIBERS MESSAGES SECONDS

Connects SUBSCRIBERS paho-mqtt clients over TLS to 127.0.0.1:PORT (server
name "localhost"), subscribes each to one topic at QoS 1, prints "ready",
then publishes MESSAGES QoS 1 messages through moat, spread over SECONDS.
It then waits (up to 60 s) for every subscriber to have every message and
prints one JSON line: how many distinct messages each subscriber got, how
many disconnects happened, and how many publishes were not acknowledged.
"""

import json
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt

port, cafile = int(sys.argv[1]), sys.argv[2]
subscribers, messages, seconds = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
topic = "rotation/load"
lock = threading.Lock()
disconnects = 0


def client(name):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, clean_session=True)
    c.tls_set(ca_certs=cafile, cert_reqs=ssl.CERT_REQUIRED)

    def on_disconnect(client, userdata, flags, reason, properties):
        global disconnects
        with lock:
            disconnects += 1

    c.on_disconnect = on_disconnect
    return c


received = [set() for _ in range(subscribers)]
subscribed = threading.Semaphore(0)
subs = []
for i in range(subscribers):
    c = client(f"rot-sub-{i}")

    def on_message(client, userdata, msg, i=i):
        with lock:
            received[i].add(msg.payload.decode())

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        subscribed.release()

    def on_connect(client, userdata, flags, reason, properties):
        client.subscribe(topic, qos=1)

    c.on_message = on_message
    c.on_subscribe = on_subscribe
    c.on_connect = on_connect
    c.connect("localhost", port, keepalive=30)
    c.loop_start()
    subs.append(c)

for _ in range(subscribers):
    if not subscribed.acquire(timeout=30):
        print(json.dumps({"error": "subscribers did not all subscribe"}), flush=True)
        sys.exit(1)
print("ready", flush=True)

pub = client("rot-pub")
pub.connect("localhost", port, keepalive=30)
pub.loop_start()
unacked = 0
interval = seconds / max(messages, 1)
start = time.monotonic()
for n in range(messages):
    info = pub.publish(topic, str(n), qos=1)
    try:
        info.wait_for_publish(timeout=10)
    except Exception:
        pass
    if not info.is_published():
        unacked += 1
    delay = start + (n + 1) * interval - time.monotonic()
    if delay > 0:
        time.sleep(delay)

deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    with lock:
        if all(len(r) == messages for r in received):
            break
    time.sleep(0.1)

with lock:
    result = {
        "received": [len(r) for r in received],
        "disconnects": disconnects,
        "unacked": unacked,
    }
for c in subs + [pub]:
    c.loop_stop()
print(json.dumps(result), flush=True)

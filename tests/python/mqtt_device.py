#!/usr/bin/env python3
"""A device driven by paho-mqtt, for the MQTT-awareness tests.

Usage:
  mqtt_device.py PORT CAFILE CERT KEY VERSION CLIENT_ID USERNAME ACTION [ARGS...]

CERT/KEY may be "-" for none, USERNAME "-" for none (the password is then
also absent; otherwise it is "secret"). VERSION is 311 or 5. Actions:

  connect                       CONNACK only
  publish QOS SIZE TOPIC...     publish SIZE bytes to each topic at QOS and
                                wait for the acknowledgements
  subscribe SECONDS FILTER...   subscribe, then collect messages for SECONDS

Prints one JSON object: the CONNACK reason, acknowledgement reason codes,
granted codes, messages received, and the DISCONNECT reason if the server
sent one or closed the connection.
"""

import json
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

port, cafile, cert, key, version, client_id, username, action = sys.argv[1:9]
args = sys.argv[9:]
v5 = version == "5"

result = {"connack": None, "acks": {}, "granted": None, "messages": [], "disconnect": None}
connected = threading.Event()
subscribed = threading.Event()
acked = threading.Condition()

c = mqtt.Client(
    mqtt.CallbackAPIVersion.VERSION2,
    client_id=client_id,
    protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
)
c.tls_set(
    ca_certs=cafile,
    certfile=None if cert == "-" else cert,
    keyfile=None if key == "-" else key,
    cert_reqs=ssl.CERT_REQUIRED,
)
if username != "-":
    c.username_pw_set(username, "secret")


def on_connect(client, userdata, flags, reason, properties):
    result["connack"] = {"value": reason.value, "name": reason.getName()}
    connected.set()


def on_disconnect(client, userdata, flags, reason, properties):
    result["disconnect"] = {"value": reason.value, "name": reason.getName()}
    connected.set()
    subscribed.set()
    with acked:
        acked.notify_all()


def on_publish(client, userdata, mid, reason, properties):
    with acked:
        result["acks"][str(mid)] = {"value": reason.value, "name": reason.getName()}
        acked.notify_all()


def on_subscribe(client, userdata, mid, reasons, properties):
    result["granted"] = [r.value for r in reasons]
    subscribed.set()


def on_message(client, userdata, msg):
    result["messages"].append([msg.topic, msg.payload.decode(errors="replace")])


c.on_connect = on_connect
c.on_disconnect = on_disconnect
c.on_publish = on_publish
c.on_subscribe = on_subscribe
c.on_message = on_message

try:
    c.connect("localhost", int(port), keepalive=30)
except Exception as e:  # the TLS handshake itself failed
    result["error"] = str(e)
    print(json.dumps(result), flush=True)
    sys.exit(0)
c.loop_start()
connected.wait(10)
ok = result["connack"] is not None and result["connack"]["value"] == 0 and result["disconnect"] is None

if ok and action == "publish":
    qos, size, topics = int(args[0]), int(args[1]), args[2:]
    mids = []
    for t in topics:
        info = c.publish(t, "x" * size, qos=qos)
        mids.append(info.mid)
    deadline = time.monotonic() + 10
    with acked:
        while (
            qos > 0
            and time.monotonic() < deadline
            and result["disconnect"] is None
            and not all(str(m) in result["acks"] for m in mids)
        ):
            acked.wait(0.2)
    if qos == 0:
        time.sleep(1)
    result["mids"] = mids
elif ok and action == "subscribe":
    seconds, filters = float(args[0]), args[1:]
    c.subscribe([(f, 1) for f in filters])
    subscribed.wait(10)
    print(json.dumps({"subscribed": result["granted"]}), flush=True)
    time.sleep(seconds)

time.sleep(0.2)
c.loop_stop()
print(json.dumps(result), flush=True)

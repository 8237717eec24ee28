#!/usr/bin/env python3
"""One long MQTT session driven by paho-mqtt, one command at a time, for the
tests of settings that reach live sessions.

Usage:
  mqtt_session.py PORT CAFILE CERT KEY VERSION CLIENT_ID [WS_PATH]

VERSION is 311 or 5. With WS_PATH (e.g. /mqtt), paho connects over
WebSockets (wss://localhost:PORT/WS_PATH) instead of raw TLS. Commands, one per line on standard input:

  subscribe FILTER            prints {"suback": [codes]}
  unsubscribe FILTER          prints {"unsuback": true}
  publish TOPIC PAYLOAD       at QoS 1; prints {"puback": code}
  quit

Events, one JSON object per line on standard output, as they happen:
{"connack": code}, {"message": [topic, payload]}, {"disconnect": code}
(code -1 when the connection closed without a DISCONNECT), and
{"connect_error": text} when the connection could not be made.
"""

import json
import ssl
import sys
import threading

import paho.mqtt.client as mqtt

port, cafile, cert, key, version, client_id = sys.argv[1:7]
ws_path = sys.argv[7] if len(sys.argv) > 7 else None
v5 = version == "5"
out = threading.Lock()


def emit(obj):
    with out:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def code(rc):
    return rc.value if hasattr(rc, "value") else int(rc)


c = mqtt.Client(
    mqtt.CallbackAPIVersion.VERSION2,
    client_id=client_id,
    protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    transport="websockets" if ws_path else "tcp",
)
if ws_path:
    c.ws_set_options(path=ws_path)
c.tls_set(ca_certs=cafile, certfile=cert, keyfile=key)
c.reconnect_delay_set(min_delay=3600, max_delay=3600)


def on_connect(_c, _u, _f, rc, _p=None):
    emit({"connack": code(rc)})


def on_disconnect(_c, _u, _f, rc, _p=None):
    # paho reports a close without DISCONNECT as "unspecified error" (128)
    # in v5 and as a non-zero rc in 3.1.1; a DISCONNECT from the server
    # carries its reason in v5.
    emit({"disconnect": code(rc) if v5 else -1})


def on_subscribe(_c, _u, _mid, codes, _p=None):
    emit({"suback": [code(x) for x in codes]})


def on_unsubscribe(_c, _u, _mid, _codes, _p=None):
    emit({"unsuback": True})


def on_publish(_c, _u, _mid, rc, _p=None):
    emit({"puback": code(rc)})


def on_message(_c, _u, msg):
    emit({"message": [msg.topic, msg.payload.decode("utf-8", "replace")]})


c.on_connect = on_connect
c.on_disconnect = on_disconnect
c.on_subscribe = on_subscribe
c.on_unsubscribe = on_unsubscribe
c.on_publish = on_publish
c.on_message = on_message
try:
    c.connect("localhost", int(port), keepalive=60)
except Exception as e:  # noqa: BLE001 - reported to the test, which decides
    emit({"connect_error": str(e)})
    sys.exit(0)
c.loop_start()

for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    if words[0] == "subscribe":
        c.subscribe(words[1], qos=1)
    elif words[0] == "unsubscribe":
        c.unsubscribe(words[1])
    elif words[0] == "publish":
        c.publish(words[1], words[2], qos=1)
    elif words[0] == "quit":
        break

c.disconnect()
c.loop_stop()

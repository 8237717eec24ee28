//! Packets captured from real clients, shared by the unit tests.
//!
//! Captured with Mosquitto 2.0.11's `mosquitto_pub` and `mosquitto_sub`
//! talking to a throwaway Python listener on 127.0.0.1 that logged every
//! packet it received as hex (and answered CONNACK/PUBACK/PUBREC/PUBCOMP/
//! SUBACK/UNSUBACK so the clients went on). The command line is given for
//! each group. The same bytes seed the fuzz corpus
//! (`fuzz/corpus/mqtt_scanner/`). Two builders make hand-made CONNECTs.

/// Decodes a hex string, ignoring spaces.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let pair = core::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(pair, 16).expect("hex digit")
        })
        .collect()
}

/// Builds a CONNECT from parts; `body` is everything after the fixed
/// header.
pub(crate) fn connect_packet(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::header::encode_fixed_header(0x10, body.len(), &mut out).unwrap();
    out.extend_from_slice(body);
    out
}

/// The body of an MQTT 5 CONNECT with keep-alive 10: `flags`, the property
/// block `props` and the payload `payload`.
pub(crate) fn connect_v5_body(flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x05".to_vec();
    body.push(flags);
    body.extend_from_slice(&[0x00, 0x0A]);
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    body
}

// mosquitto_pub -V mqttv311 -i dev1 -u alice -P pw -t sensors/dev1/temp -m 21.5
pub(crate) const CONNECT_V311_USER_PW: &str =
    "101b00044d51545404c2003c0004646576310005616c69636500027077";
pub(crate) const PUBLISH_V311_QOS0: &str = "3017001173656e736f72732f646576312f74656d7032312e35";
pub(crate) const DISCONNECT: &str = "e000";

// mosquitto_pub -V mqttv31 -i dev1 -u alice -P pw -t sensors/dev1/temp -m 21.5 -q 1
pub(crate) const CONNECT_V31_USER_PW: &str =
    "101d00064d514973647003c2003c0004646576310005616c69636500027077";
pub(crate) const PUBLISH_V31_QOS1: &str = "3219001173656e736f72732f646576312f74656d70000132312e35";

// mosquitto_pub -V mqttv5 -i dev1 -u alice -P pw -t sensors/dev1/temp -m 21.5 -q 2
pub(crate) const CONNECT_V5_USER_PW: &str =
    "101f00044d51545405c2003c032100140004646576310005616c69636500027077";
pub(crate) const PUBLISH_V5_QOS2: &str = "341a001173656e736f72732f646576312f74656d7000010032312e35";
pub(crate) const PUBREL_V5: &str = "62020001";

// mosquitto_pub -V mqttv311 -i dev2 --will-topic status/dev2 --will-payload offline
//   --will-qos 1 --will-retain -t a/b -m hi -q 1 -r -k 30
pub(crate) const CONNECT_V311_WILL: &str =
    "102600044d515454042e001e000464657632000b7374617475732f6465763200076f66666c696e65";
pub(crate) const PUBLISH_V311_QOS1_RETAIN: &str = "33090003612f6200016869";

// mosquitto_pub -V mqttv5 -i dev3 -u bob --will-topic status/dev3 --will-payload gone
//   --will-qos 2 -D will will-delay-interval 10 -D will content-type text/plain
//   -D connect session-expiry-interval 3600 -D connect receive-maximum 20
//   -D connect maximum-packet-size 65536 -D connect topic-alias-maximum 10
//   -D connect user-property k v -D publish topic-alias 3
//   -D publish user-property a b -t alias/topic -m x -q 1
pub(crate) const CONNECT_V5_WILL_PROPS: &str = "105300044d5154540596003c171100000e1021001427000100\
    0022000a2600016b00017600046465763312180000000a03000a746578742f706c61696e000b7374617475732f6465\
    76330004676f6e650003626f62";
pub(crate) const PUBLISH_V5_TOPIC_ALIAS: &str =
    "321b000b616c6961732f746f70696300010a2300032600016100016278";

// mosquitto_sub -V mqttv311 -i sub1 -u alice -P pw -t 'sensors/+/temp' -t 'alerts/#'
//   -t '$SYS/broker/uptime' -q 1 -E
pub(crate) const CONNECT_V311_SUB: &str =
    "101b00044d51545404c2003c0004737562310005616c69636500027077";
pub(crate) const SUBSCRIBE_V311_THREE: &str = "82330001000e73656e736f72732f2b2f74656d70010008616c\
    657274732f23010012245359532f62726f6b65722f757074696d6501";

// mosquitto_sub -V mqttv31 -i sub2 -t 'a/+/c' -t '#' -q 2 -E
pub(crate) const CONNECT_V31_NO_CREDENTIALS: &str = "101200064d51497364700302003c000473756232";
pub(crate) const SUBSCRIBE_V31_TWO: &str = "820e00010005612f2b2f630200012302";

// mosquitto_sub -V mqttv5 -i sub3 -t 'sensors/#' -t 'cmd/+' -q 1
//   -D subscribe subscription-identifier 7 -D subscribe user-property x y
//   -D connect session-expiry-interval 60 -E
pub(crate) const CONNECT_V5_SESSION_EXPIRY: &str =
    "101900044d5154540502003c08110000003c210014000473756233";
pub(crate) const SUBSCRIBE_V5_PROPS: &str =
    "82200001090b0726000178000179000973656e736f72732f23010005636d642f2b01";

// mosquitto_sub -V mqttv5 -i sub4 -U 'old/+/x' -U 'old/#' -t 'new/t' -E
pub(crate) const CONNECT_V5_MINIMAL: &str = "101400044d5154540502003c03210014000473756234";
pub(crate) const SUBSCRIBE_V5_ONE: &str = "820b00010000056e65772f7400";
pub(crate) const UNSUBSCRIBE_V5_PLUS: &str = "a20c00020000076f6c642f2b2f78";
pub(crate) const UNSUBSCRIBE_V5_HASH: &str = "a20a00030000056f6c642f23";

// mosquitto_sub -V mqttv311 -i sub5 -U 'old/+/x' -U 'old/#' -t 'new/t' -E
pub(crate) const CONNECT_V311_MINIMAL: &str = "101000044d51545404 02003c000473756235";
pub(crate) const SUBSCRIBE_V311_ONE: &str = "820a000100056e65772f7400";
pub(crate) const UNSUBSCRIBE_V311_PLUS: &str = "a20b000200076f6c642f2b2f78";
pub(crate) const UNSUBSCRIBE_V311_HASH: &str = "a209000300056f6c642f23";

/// Every captured CONNECT.
pub(crate) const ALL_CONNECTS: [&str; 9] = [
    CONNECT_V311_USER_PW,
    CONNECT_V31_USER_PW,
    CONNECT_V5_USER_PW,
    CONNECT_V311_WILL,
    CONNECT_V5_WILL_PROPS,
    CONNECT_V311_SUB,
    CONNECT_V31_NO_CREDENTIALS,
    CONNECT_V5_SESSION_EXPIRY,
    CONNECT_V5_MINIMAL,
];

/// Every captured packet.
pub(crate) const ALL: [&str; 26] = [
    CONNECT_V311_USER_PW,
    PUBLISH_V311_QOS0,
    DISCONNECT,
    CONNECT_V31_USER_PW,
    PUBLISH_V31_QOS1,
    CONNECT_V5_USER_PW,
    PUBLISH_V5_QOS2,
    PUBREL_V5,
    CONNECT_V311_WILL,
    PUBLISH_V311_QOS1_RETAIN,
    CONNECT_V5_WILL_PROPS,
    PUBLISH_V5_TOPIC_ALIAS,
    CONNECT_V311_SUB,
    SUBSCRIBE_V311_THREE,
    CONNECT_V31_NO_CREDENTIALS,
    SUBSCRIBE_V31_TWO,
    CONNECT_V5_SESSION_EXPIRY,
    SUBSCRIBE_V5_PROPS,
    CONNECT_V5_MINIMAL,
    SUBSCRIBE_V5_ONE,
    UNSUBSCRIBE_V5_PLUS,
    UNSUBSCRIBE_V5_HASH,
    CONNECT_V311_MINIMAL,
    SUBSCRIBE_V311_ONE,
    UNSUBSCRIBE_V311_PLUS,
    UNSUBSCRIBE_V311_HASH,
];

#[test]
fn every_vector_is_one_whole_packet() {
    use crate::header::FixedHeader;
    for vector in ALL {
        let bytes = hex(vector);
        let header = FixedHeader::parse(&bytes).unwrap().unwrap();
        assert_eq!(header.total_len(), bytes.len(), "{vector}");
    }
}

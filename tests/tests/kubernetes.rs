//! The kubernetes platform, contract-tested over real HTTP against kmock, an in-memory
//! Kubernetes API (see common/kmock.rs for what it adds to kmock and what it cannot show):
//! create, start, stop, restart, delete, logs, adoption by a new worker, and what the pod
//! watcher reports (running, crash loops, image pull errors), and the kinds a worker
//! advertises from its `--capabilities-file`. Redis, the API and the worker are the real
//! ones.

mod common;

use common::kmock::NAMESPACE;
use common::{WorkerNode, runtime_binary, scratch, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

#[path = "kubernetes/harness.rs"]
mod harness;

use harness::{KubeSystem, dep_template_spec, driver, worker, worker_tuned};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_start_stop_restart_delete_through_server_side_apply() -> anyhow::Result<()> {
    let k = KubeSystem::start().await?;
    let id = k
        .create(
            "sensors",
            json!({"resources": {"memoryMb": 256, "cpuMillis": 500}}),
        )
        .await;
    let name = format!("draas-{id}");
    k.succeed(&id, "start").await;

    // Running, reachable at its Service, and observed running by the pod watcher.
    let inst = k.wait_observed(&id, "running").await;
    assert_eq!(inst["state"], "running");
    assert_eq!(
        inst["runtime"]["endpoint"],
        format!("http://{name}.{NAMESPACE}.svc:8080")
    );
    let pod = inst["runtime"]["pod"].as_str().unwrap().to_owned();
    assert!(pod.starts_with(&name), "{inst}");
    assert_eq!(inst["runtime"]["observed"]["name"], pod);

    // The three objects, as applied.
    let cm = k.api::<ConfigMap>().get(&name).await?;
    let yaml = &cm.data.unwrap()["server.yaml"];
    assert!(
        yaml.contains("port: 8080") && yaml.contains("kind: http"),
        "{yaml}"
    );
    let svc = k.api::<Service>().get(&name).await?;
    let ports: Vec<_> = svc
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [8080, 8081]);
    let dep = k.deployment(&id).await.unwrap();
    let spec = dep.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    let container = &spec.template.spec.unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some("draas-runtime:test"));
    let limits = container
        .resources
        .as_ref()
        .unwrap()
        .limits
        .clone()
        .unwrap();
    assert_eq!(
        (limits["memory"].0.as_str(), limits["cpu"].0.as_str()),
        ("256Mi", "500m")
    );
    // Its data lives on a claim of its own, mounted at /app/data.
    let volume = format!("{name}-data");
    let claim = k.api::<PersistentVolumeClaim>().get(&volume).await?;
    let wanted = claim.spec.unwrap().resources.unwrap().requests.unwrap();
    assert_eq!(wanted["storage"].0, "1Gi");
    let pod_spec = dep_template_spec(&k, &id).await;
    let data = pod_spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "data")
        .unwrap();
    assert_eq!(data.persistent_volume_claim.unwrap().claim_name, volume);

    // Everything went through server-side apply, under the draas field manager, forced.
    let applies = k.requests("PATCH", &name);
    assert_eq!(applies.len(), 4, "{applies:#?}");
    for apply in &applies {
        assert_eq!(
            apply["contentType"], "application/apply-patch+yaml",
            "{apply}"
        );
        assert_eq!(apply["query"]["fieldManager"], "draas", "{apply}");
        assert_eq!(apply["query"]["force"], "true", "{apply}");
    }

    // Logs come from the pod through the bus.
    let (status, logs) = k
        .sys
        .get(&format!("/api/v1/instances/{id}/logs?tail=2"))
        .await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(
        logs["lines"].as_str().unwrap_or_default(),
        format!("line 29 of {pod}\nline 30 of {pod}"),
        "{logs}"
    );

    // The driver's start is idempotent: applying it again to the running instance (as a
    // redelivered command does) changes nothing and answers at once.
    let driver = driver(&k).await;
    let record: draas_protocol::Instance = serde_json::from_value(k.sys.instance(&id).await)?;
    let again = draas_worker::driver::Driver::start(&driver, &record).await?;
    assert_eq!(again.pod.as_deref(), Some(pod.as_str()));
    assert_eq!(k.pods(&id).await.len(), 1);
    assert_eq!(k.requests("PATCH", &name).len(), 8);

    // Stop scales to zero (a forced apply by draas-stop) and waits for the pod to go.
    k.succeed(&id, "stop").await;
    assert_eq!(
        k.deployment(&id).await.unwrap().spec.unwrap().replicas,
        Some(0)
    );
    assert!(k.pods(&id).await.is_empty());
    let scale = k.requests("PATCH", &name);
    let last = scale.last().unwrap();
    assert_eq!(last["query"]["fieldManager"], "draas-stop", "{last}");
    assert_eq!(last["body"]["spec"], json!({"replicas": 0}), "{last}");
    k.wait_observed(&id, "absent").await;
    assert!(
        k.api::<PersistentVolumeClaim>()
            .get_opt(&volume)
            .await?
            .is_some(),
        "stop must keep the data"
    );

    // Start again: back to one replica, a new pod; restart replaces it.
    k.succeed(&id, "start").await;
    assert_eq!(
        k.deployment(&id).await.unwrap().spec.unwrap().replicas,
        Some(1)
    );
    let first = k.pods(&id).await[0].metadata.name.clone();
    k.succeed(&id, "restart").await;
    let pods = k.pods(&id).await;
    assert_eq!(pods.len(), 1);
    assert_ne!(pods[0].metadata.name, first, "restart kept the old pod");
    // The stop inside the restart is no news to the watchers: once they have seen the new
    // pod, the instance is still running.
    let current = pods[0].metadata.name.clone().unwrap();
    wait_until(|| async {
        let inst = k.sys.instance(&id).await;
        (inst["runtime"]["observed"]["name"] == current.as_str()
            && inst["runtime"]["observed"]["phase"] == "running")
            .then_some(())
    })
    .await?;
    assert_eq!(k.sys.instance(&id).await["state"], "running");

    // Delete: every object, with foreground propagation.
    let (status, op) = k.sys.delete(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("succeeded")),
        "{op}"
    );
    assert!(k.deployment(&id).await.is_none());
    assert!(k.api::<Service>().get_opt(&name).await?.is_none());
    assert!(k.api::<ConfigMap>().get_opt(&name).await?.is_none());
    assert!(
        k.api::<PersistentVolumeClaim>()
            .get_opt(&volume)
            .await?
            .is_none()
    );
    let deletes = k.requests("DELETE", &name);
    assert_eq!(deletes.len(), 4, "{deletes:#?}");
    for delete in &deletes {
        assert_eq!(
            delete["body"]["propagationPolicy"], "Foreground",
            "{delete}"
        );
    }
    let (status, _) = k.sys.get(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_adopts_running_instances_and_removes_strays() -> anyhow::Result<()> {
    let mut k = KubeSystem::start().await?;
    let id = k.create("adopted", json!({})).await;
    k.succeed(&id, "start").await;
    let pod = k.pods(&id).await[0].metadata.name.clone();
    // A Deployment of this DRaaS deployment whose instance does not exist.
    let stray = uuid::Uuid::new_v4();
    let stray_name = format!("draas-{stray}");
    let labels = json!({"io.draas.instance.id": stray.to_string(), "io.draas.managed-by": k.sys.keys.prefix()});
    let dep: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": stray_name, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "drasi", "image": "draas-runtime:test"}]}}},
    }))?;
    k.api::<Deployment>()
        .patch(
            &stray_name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&dep),
        )
        .await?;

    let applies_before = k.requests("PATCH", &format!("draas-{id}")).len();
    let fresh = worker(&k.sys.redis, &k.sys.keys, &k.kube).await?;
    let old = std::mem::replace(&mut k.sys.worker, fresh);
    old.shutdown().await;
    k.wait_workers(1).await?;

    // The stray is removed; the instance is untouched: same pod, no new apply.
    wait_until(|| async {
        k.deployment(&stray.to_string())
            .await
            .is_none()
            .then_some(())
    })
    .await?;
    let pods = k.pods(&id).await;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].metadata.name, pod);
    assert_eq!(
        k.requests("PATCH", &format!("draas-{id}")).len(),
        applies_before
    );
    assert_eq!(k.sys.instance(&id).await["state"], "running");

    // The new worker's watcher sees the pod, and commands work through it.
    k.succeed(&id, "stop").await;
    assert!(k.pods(&id).await.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_pod_fails_its_instance_with_the_reason() -> anyhow::Result<()> {
    let k = KubeSystem::start().await?;
    let id = k.create("crashy", json!({})).await;
    k.succeed(&id, "start").await;
    k.wait_observed(&id, "running").await;
    let pod = k.pods(&id).await[0].metadata.name.clone().unwrap();

    // Play the kubelet: the container keeps exiting with code 1.
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "drasi", "image": "draas-runtime:test", "imageID": "",
            "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                "message": "back-off 40s restarting failed container=drasi"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
    }});
    k.api::<Pod>()
        .patch_status(&pod, &PatchParams::default(), &Patch::Merge(&status))
        .await?;

    let inst = k.sys.wait_state(&id, "failed").await;
    let message = inst["runtime"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("CrashLoopBackOff") && message.contains("last exit code 1"),
        "{inst}"
    );
    // The log tail is the crashed container's (`previous=true`).
    assert!(
        message.contains(&format!("line 30 of {pod}")),
        "log tail missing: {message}"
    );
    let asked = k.requests("GET", &format!("pods/{pod}/log"));
    assert!(
        asked.iter().any(|r| r["query"]["previous"] == "true"),
        "{asked:#?}"
    );
    assert_eq!(inst["runtime"]["exitCode"], 1);
    // `failed` means not running: the pod Kubernetes kept restarting is scaled away.
    assert_eq!(
        k.deployment(&id).await.unwrap().spec.unwrap().replicas,
        Some(0)
    );
    k.wait_observed(&id, "absent").await;

    // Both the observation and the state change are in the instance's history (its SSE
    // stream starts with the recent past).
    let mut sse = k
        .sys
        .http
        .get(k.sys.url(&format!("/api/v1/instances/{id}/events")))
        .send()
        .await?;
    let mut history = String::new();
    let seen = tokio::time::timeout(common::DEADLINE, async {
        while let Some(chunk) = sse.chunk().await? {
            history.push_str(&String::from_utf8_lossy(&chunk));
            if history.contains("crashLooping: CrashLoopBackOff")
                && history.contains("3 restarts")
                && history.contains("\"to\":\"failed\"")
            {
                return anyhow::Ok(true);
            }
        }
        Ok(false)
    })
    .await;
    assert!(matches!(seen, Ok(Ok(true))), "{history}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_fails_the_start_at_once() -> anyhow::Result<()> {
    let k = KubeSystem::start().await?;
    let id = k
        .create("nopull", json!({"image": "registry.invalid/unpullable:1"}))
        .await;
    let (status, op) = k.sys.post(&format!("/api/v1/instances/{id}/start")).await;
    assert_eq!(
        (status, op["state"].clone()),
        (200, json!("failed")),
        "{op}"
    );
    let error = op["error"].to_string();
    assert!(error.contains("imagePullError: ErrImagePull"), "{op}");
    assert!(error.contains("registry.invalid/unpullable:1"), "{op}");
    assert_eq!(k.sys.instance(&id).await["state"], "failed");
    // A failed start leaves nothing running.
    assert_eq!(
        k.deployment(&id).await.unwrap().spec.unwrap().replicas,
        Some(0)
    );
    wait_until(|| async { k.pods(&id).await.is_empty().then_some(()) }).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_scaled_down_or_deleted_behind_draas_fail_the_instance() -> anyhow::Result<()> {
    let k = KubeSystem::start().await?;
    let id = k.create("meddled", json!({})).await;
    let name = format!("draas-{id}");
    k.succeed(&id, "start").await;

    // Someone runs `kubectl scale --replicas=0`.
    let scale = json!({"spec": {"replicas": 0}});
    k.api::<Deployment>()
        .patch_scale(&name, &PatchParams::default(), &Patch::Merge(&scale))
        .await?;
    let inst = k.sys.wait_state(&id, "failed").await;
    let message = inst["runtime"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("scaled to zero outside DRaaS"), "{inst}");
    // A start takes replicas back (forced apply) and runs it again.
    k.succeed(&id, "start").await;
    assert_eq!(
        k.deployment(&id).await.unwrap().spec.unwrap().replicas,
        Some(1)
    );

    // Someone runs `kubectl delete deployment`.
    k.api::<Deployment>()
        .delete(&name, &Default::default())
        .await?;
    let inst = k.sys.wait_state(&id, "failed").await;
    let message = inst["runtime"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("deleted outside DRaaS"), "{inst}");
    k.succeed(&id, "start").await;
    assert!(k.deployment(&id).await.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draas_worker_serves_kubernetes_and_names_an_unreachable_cluster() -> anyhow::Result<()> {
    let k = KubeSystem::start().await?;
    let spawn = |kubeconfig: &std::path::Path| {
        std::process::Command::new(common::draas_binary())
            .args([
                "worker",
                "--platform",
                "kubernetes",
                "--namespace",
                NAMESPACE,
            ])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "--redis-url",
                &k.sys.redis.url,
                "--prefix",
                k.sys.keys.prefix(),
            ])
            .arg("--data-dir")
            .arg(scratch("k8s-cli-worker"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
    };
    // A second worker process joins the platform next to the in-process one, then drains on
    // SIGTERM.
    let mut child = spawn(&k.kube.kubeconfig)?;
    k.wait_workers(2).await?;
    common::terminate(&mut child);
    let status = child.wait()?;
    assert!(status.success(), "{status}");

    // A cluster that does not answer: the worker exits at once, saying what it could not do.
    let dead = scratch("dead-kubeconfig").join("kubeconfig");
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let text = std::fs::read_to_string(&k.kube.kubeconfig)?.replace(&k.kube.url, &closed);
    std::fs::write(&dead, text)?;
    let out = spawn(&dead)?.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "cannot list deployments in namespace `{NAMESPACE}`"
        )),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_deleted_while_no_worker_runs_is_noticed_by_the_next() -> anyhow::Result<()> {
    let mut k = KubeSystem::start().await?;
    let gone = k.create("gone", json!({})).await;
    let kept = k.create("kept", json!({})).await;
    k.succeed(&gone, "start").await;
    k.succeed(&kept, "start").await;

    // The platform's only worker goes away (a process worker takes its slot in the harness).
    let process = WorkerNode::start(&k.sys.redis.url, &k.sys.keys, runtime_binary()).await?;
    std::mem::replace(&mut k.sys.worker, process)
        .shutdown()
        .await;
    k.wait_workers(0).await?;
    // Meanwhile someone deletes one instance's Deployment; nobody watches.
    k.api::<Deployment>()
        .delete(&format!("draas-{gone}"), &Default::default())
        .await?;
    wait_until(|| async { k.deployment(&gone).await.is_none().then_some(()) }).await?;

    let fresh = worker(&k.sys.redis, &k.sys.keys, &k.kube).await?;
    std::mem::replace(&mut k.sys.worker, fresh).shutdown().await;
    let inst = k.sys.wait_state(&gone, "failed").await;
    let message = inst["runtime"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("workload was gone"), "{inst}");
    assert_eq!(k.sys.instance(&kept).await["state"], "running");
    Ok(())
}

/// The instance as the worker reads it: its record in Redis.
async fn stored_instance(k: &KubeSystem, id: &str) -> anyhow::Result<draas_protocol::Instance> {
    let store = draas_bus::Store::new(
        draas_bus::connect::shared(&k.sys.redis.url).await?,
        k.sys.keys.clone(),
    );
    let stored = store.instance(id.parse()?).await?;
    Ok(stored
        .ok_or_else(|| anyhow::anyhow!("instance {id} is not in Redis"))?
        .instance)
}

/// A data request through the API, which must answer within `limit` (never hang on an
/// address that does not resolve); returns its status and body.
async fn data_request(
    k: &KubeSystem,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let limit = std::time::Duration::from_secs(15);
    let mut request = k.sys.http.request(method, k.sys.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answered = tokio::time::timeout(limit, async {
        common::status_json(request.send().await.expect("request")).await
    })
    .await;
    answered.unwrap_or_else(|_| panic!("{path} did not answer within {limit:?}"))
}

/// The worker reaches a Kubernetes instance for the data plane at its Service's in-cluster
/// address, read from the cluster when asked: `Driver::endpoint` answers
/// `http://draas-<id>.<namespace>.svc:<port>` with the port the Service publishes for the
/// listener, and names the Service once it is gone. Data requests through the API for such
/// an instance answer at once with 502 `instance_unreachable` and the reason (the in-cluster
/// name does not resolve on the test machine), never hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reaches_an_instance_at_its_services_in_cluster_address() -> anyhow::Result<()> {
    use draas_worker::driver::Driver;

    let k = KubeSystem::start().await?;
    let id = k.create("addressed", json!({})).await;
    let name = format!("draas-{id}");
    let host = format!("{name}.{NAMESPACE}.svc");
    k.succeed(&id, "start").await;
    k.wait_observed(&id, "running").await;

    // The ports the Service in the cluster publishes: `api`, and `s-<port>` for the source.
    let service = k.api::<Service>().get(&name).await?;
    let ports = service.spec.and_then(|s| s.ports).unwrap_or_default();
    let published = |wanted: &dyn Fn(&str) -> bool| {
        let found: Vec<i32> = ports
            .iter()
            .filter(|p| p.name.as_deref().is_some_and(wanted))
            .map(|p| p.port)
            .collect();
        assert_eq!(found.len(), 1, "{ports:?}");
        found[0]
    };
    let api_port = published(&|n| n == "api");
    let source_port = published(&|n| n.starts_with("s-"));
    assert_ne!(api_port, source_port, "{ports:?}");

    let driver = driver(&k).await;
    let record = stored_instance(&k, &id).await?;
    assert_eq!(
        driver.endpoint(&record, "api").await?,
        format!("http://{host}:{api_port}")
    );
    assert_eq!(
        driver.endpoint(&record, "source:readings").await?,
        format!("http://{host}:{source_port}")
    );
    // A listener the instance does not have is named.
    let error = driver
        .endpoint(&record, "source:nope")
        .await
        .expect_err("no such listener")
        .to_string();
    assert!(
        error.contains(&name) && error.contains("source:nope"),
        "{error}"
    );

    // Through the API: the worker tries the in-cluster address, which does not resolve here;
    // the answer is a prompt 502 with the reason, for reads, feeds and events alike.
    let results = format!("/api/v1/instances/{id}/queries/hot/results");
    let changes = format!("/api/v1/instances/{id}/queries/hot/changes");
    let events = format!("/api/v1/instances/{id}/sources/readings/events");
    let reading = json!({"operation": "insert", "element": {"type": "node", "id": "s1", "labels": ["Sensor"], "properties": {"id": "s1", "temperature": 91}}});
    for (method, path, body, listener, port) in [
        (reqwest::Method::GET, &results, None, "api", api_port),
        (reqwest::Method::GET, &changes, None, "api", api_port),
        (
            reqwest::Method::POST,
            &events,
            Some(reading.clone()),
            "source:readings",
            source_port,
        ),
    ] {
        let (status, body) = data_request(&k, method, path, body).await;
        assert_eq!(status, 502, "{path}: {body}");
        assert_eq!(
            body["error"]["code"], "instance_unreachable",
            "{path}: {body}"
        );
        assert_eq!(body["error"]["details"]["listener"], listener, "{body}");
        let reason = body["error"]["details"]["reason"]
            .as_str()
            .unwrap_or_default();
        assert!(
            reason.contains(&format!("{host}:{port}")),
            "{path}: the reason names the address tried: {body}"
        );
    }

    // The Service is deleted behind DRaaS: the address cannot be had, and the error says why.
    k.api::<Service>()
        .delete(&name, &Default::default())
        .await?;
    wait_until(|| async {
        k.api::<Service>()
            .get_opt(&name)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await?;
    for listener in ["api", "source:readings"] {
        let error = driver
            .endpoint(&record, listener)
            .await
            .expect_err("the Service is gone")
            .to_string();
        assert!(
            error.contains(&format!("Service {name}")),
            "{listener}: {error}"
        );
    }
    let (status, body) = data_request(&k, reqwest::Method::GET, &results, None).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "instance_unreachable", "{body}");
    let reason = body["error"]["details"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains(&format!("Service {name}")), "{body}");
    Ok(())
}

/// A kubernetes worker cannot ask its image what it runs: without a file it advertises
/// nothing; with `--capabilities-file` written as deploy/kubernetes/worker-kubernetes.yaml's
/// init container writes it (`draas-runtime capabilities --output PATH`) it advertises that,
/// and a file declaring fewer kinds makes the API refuse the others on this platform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_worker_advertises_its_capabilities_file() -> anyhow::Result<()> {
    let mut k = KubeSystem::start().await?;
    let store = draas_bus::Store::new(
        draas_bus::connect::shared(&k.sys.redis.url).await?,
        k.sys.keys.clone(),
    );
    let platform = draas_protocol::Platform::Kubernetes;
    let advertised = store.advertisements(platform).await?;
    assert_eq!(advertised.len(), 1, "{advertised:?}");
    assert_eq!(advertised[0].kinds, None, "no file, nothing to ask");

    // The init container's command, then a worker reading its output.
    let written = scratch("k8s-capabilities").join("kinds.json");
    let status = std::process::Command::new(runtime_binary())
        .args(["capabilities", "--output"])
        .arg(&written)
        .status()?;
    assert!(status.success());
    let printed = std::process::Command::new(runtime_binary())
        .arg("capabilities")
        .output()?;
    let expected: draas_protocol::capabilities::WorkloadKinds =
        serde_json::from_slice(&printed.stdout)?;
    let with_file = worker_tuned(&k.sys.redis, &k.sys.keys, &k.kube, |c| {
        c.capabilities_file = Some(written);
    })
    .await?;
    std::mem::replace(&mut k.sys.worker, with_file)
        .shutdown()
        .await;
    let advertised = wait_until(|| async {
        let all = store.advertisements(platform).await.ok()?;
        (all.len() == 1 && all[0].kinds.is_some()).then_some(all)
    })
    .await?;
    assert_eq!(advertised[0].kinds, Some(expected));

    // A file with fewer kinds (an image with fewer plugins): the API refuses the others.
    let lean = scratch("k8s-capabilities").join("kinds.json");
    std::fs::write(
        &lean,
        r#"{"workload": "lean 1.0", "sources": ["mock"], "reactions": ["log"]}"#,
    )?;
    let with_lean = worker_tuned(&k.sys.redis, &k.sys.keys, &k.kube, |c| {
        c.capabilities_file = Some(lean);
    })
    .await?;
    std::mem::replace(&mut k.sys.worker, with_lean)
        .shutdown()
        .await;
    wait_until(|| async {
        let all = store.advertisements(platform).await.ok()?;
        let only_lean = all.len() == 1
            && all[0]
                .kinds
                .as_ref()
                .is_some_and(|k| k.workload == "lean 1.0");
        only_lean.then_some(())
    })
    .await?;
    let (status, body) = k
        .sys
        .post_json(
            "/api/v1/instances",
            &json!({"name": "http", "platform": "kubernetes", "config": common::sensor_config()}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_kind", "{body}");
    assert_eq!(
        body["error"]["details"]["field"], "config.sources[0].kind",
        "{body}"
    );
    Ok(())
}

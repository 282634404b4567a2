//! Where a worker reaches a Kubernetes instance for the data plane: its Service's in-cluster
//! address, read from the cluster (the Service as it is now, not as the start recorded it),
//! on the port the Service publishes for the listener. Workers run in the cluster; API nodes
//! need not, and never route to a pod themselves.

use draas_protocol::Instance;
use draas_protocol::drasi::Endpoint;
use k8s_openapi::api::core::v1::Service;

use super::spec::{ANNOTATION_ENDPOINTS, object_name, service_host};
use super::{KubernetesDriver, kube_error};
use crate::driver::DriverError;

impl KubernetesDriver {
    /// `http://<service>.<namespace>.svc:<port>` of the instance's listener `name`.
    pub(super) async fn service_endpoint(
        &self,
        instance: &Instance,
        name: &str,
    ) -> Result<String, DriverError> {
        let service_name = object_name(instance.id);
        let service: Service = self
            .api::<Service>()
            .get_opt(&service_name)
            .await
            .map_err(kube_error)?
            .ok_or_else(|| {
                DriverError::Kubernetes(format!("the instance's Service {service_name} is gone"))
            })?;
        let endpoints: Vec<Endpoint> = service
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_ENDPOINTS))
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        let port = endpoints
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.url.rsplit_once(':'))
            .and_then(|(_, port)| port.parse::<i32>().ok())
            .ok_or_else(|| {
                DriverError::Kubernetes(format!(
                    "the Service {service_name} records no `{name}` listener"
                ))
            })?;
        let published = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .is_some_and(|ports| ports.iter().any(|p| p.port == port));
        if !published {
            return Err(DriverError::Kubernetes(format!(
                "the Service {service_name} does not publish port {port} (`{name}`)"
            )));
        }
        Ok(format!(
            "http://{}:{port}",
            service_host(instance.id, &self.config.namespace)
        ))
    }
}

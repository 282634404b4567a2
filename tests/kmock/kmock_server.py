#!/usr/bin/env python3
"""
A fake, in-memory Kubernetes API server for contract tests (a TEST FAKE, not production code).

It wraps kmock 0.8 (``kmock.KubernetesEmulator``) into a standalone process that
serves real HTTP on 127.0.0.1, so that a Rust kube-rs client (the DRaaS worker's
Kubernetes driver) can be exercised against something that behaves like a real
kube-apiserver with a deployment controller, a scheduler and a kubelet behind it.

Usage::

    python3 tests/kmock/kmock_server.py --port-file PATH [--requests-file PATH] [--verbose]

It listens on a free port, writes that port (digits only, no newline) to PATH
atomically (PATH.tmp + rename) once it is ready, and runs until SIGTERM/SIGINT,
then exits 0.  ``--requests-file`` appends one JSON line per client request::

    {"method": "PATCH", "path": "/apis/apps/v1/namespaces/x/deployments/web",
     "query": {"fieldManager": "draas", "force": "true"},
     "contentType": "application/apply-patch+yaml", "body": {...} | null}

Requests made by the fake's own controllers (below) are not recorded there.

What kmock provides and what is used here: the object store with history
(``self.objects``), resource declarations (``self.resources``), API discovery
(``/api``, ``/apis``, ``/apis/G``, ``/apis/G/V``, ``/version``) and the Status
error convention.  Its CRUD emulation is too naive for a kube-rs client, so the
resource endpoints are re-implemented in the subclass below.  What kmock 0.8 does
vs. what this fake does (each item mirrors the real API server):

* Resources: ``v1`` configmaps, services (+status), persistentvolumeclaims (+status),
  pods (+status, log, binding),
  events; ``apps/v1`` deployments (+status, scale); ``events.k8s.io/v1`` events
  (what kube-runtime's event Recorder writes; stored separately from ``v1`` events,
  no conversion between the two); all namespaced.  Any other
  resource under /api or /apis is a 404 Status (kmock 500s on e.g. /api/v1/namespaces).
* Metadata: kmock stores objects verbatim.  Here every write stamps
  ``metadata.resourceVersion`` from one global counter; creation stamps ``uid``,
  ``creationTimestamp`` (RFC 3339, ``Z``) and ``generation: 1`` (for kinds with a
  spec); a change of ``spec`` bumps ``generation`` (status writes never do);
  ``apiVersion``/``kind`` are always set; ``generateName`` works; ``managedFields``
  are maintained.  A write that changes nothing is a no-op (no new
  resourceVersion, no watch event), as on a real server.
* Create answers 201 (kmock: 200); an existing name is 409 AlreadyExists; a body
  namespace differing from the URL's is 400; names, labels and the main
  Deployment/Pod/Service/ConfigMap fields are validated (422 Invalid) and
  mistyped fields are 400, like the real decoder/validation; the usual defaults
  are applied (Deployment replicas=1, strategy, pod spec defaults, Service
  clusterIP/targetPort, ...).  A status sent with a create or a main-resource
  write is ignored for kinds with a status subresource.
* List: ``metadata.resourceVersion`` is the current counter (kmock: "..."),
  ``kind: <Kind>List``; items carry no apiVersion/kind (as real servers emit them);
  ``limit``/``continue`` pagination; ``labelSelector`` (``a=b``, ``a==b``,
  ``a!=b``, ``a``, ``!a``, ``a in (x,y)``, ``a notin (x,y)``) and ``fieldSelector``
  (metadata.name/namespace; some pod and event fields; unknown fields are 400).
* Watch: events carry the stamped objects; ``resourceVersion`` unset/"0" starts
  with synthetic ADDED events, any other value resumes after it (410 Expired
  ERROR event if it is too old); selectors filter, and an object that starts or
  stops matching yields ADDED/DELETED like the watch cache; ``timeoutSeconds``;
  BOOKMARKs when ``allowWatchBookmarks``; ``sendInitialEvents`` (streaming list).
  kmock's watch replays ADDED for every watch and can lose events between its
  snapshot and its subscription.
* PATCH: ``application/merge-patch+json`` (RFC 7386),
  ``application/strategic-merge-patch+json`` (list merge keys for containers,
  env, ports, volumes, conditions, ownerReferences, ...; ``$patch`` directives),
  ``application/json-patch+json`` and ``application/apply-patch+yaml``
  (server-side apply).  A resourceVersion in the patch is a precondition (409).
  A PATCH of a missing object is 404, except an apply, which creates it (201,
  ADDED event); kmock 404s all of them.
* Server-side apply: ``fieldManager`` is required (422 Invalid, as the real
  ``ValidatePatchOptions``), ``force`` is only allowed for apply (422).  Field
  ownership is tracked per manager: applying a value that another manager owns
  with a different value is a 409 Conflict unless ``force=true`` (which takes
  the field over); fields a manager stops applying are removed unless another
  manager also owns them; associative lists merge by key.  (Simplified model of
  structured-merge-diff: a fixed table of list keys, no schema.)
* Subresources: kmock parses ``/status``, ``/scale``, ``/log`` but treats them as
  the parent object (a PATCH of a Scale body to /scale overwrote the Deployment's
  apiVersion/kind; GET /log returned the pod JSON).  Here ``/status`` writes
  change only ``.status`` (and never bump generation); ``/scale`` reads and writes
  an ``autoscaling/v1`` Scale mapped onto ``spec.replicas``; PUT (replace, with
  resourceVersion precondition) works on objects, /status and /scale.
* DELETE: DeleteOptions from the JSON body (as kube-rs sends them) or the query:
  ``propagationPolicy`` (Foreground: object gets a deletionTimestamp and the
  ``foregroundDeletion`` finalizer, dependents are deleted first, then the object;
  Background (the default): object goes now, dependents are garbage-collected;
  Orphan: dependents lose their ownerReference), ``gracePeriodSeconds`` (pods are
  deleted gracefully: deletionTimestamp first, gone after the kubelet confirms),
  ``preconditions``, ``dryRun``; user finalizers block removal.  The answer is
  200 with the object where the real server returns the object (pods, services,
  anything not deleted immediately) and a ``Status`` with ``status: Success``
  otherwise (e.g. a Deployment deleted in the background), exactly what kube-rs
  models as ``Either<K, Status>``.  Missing object: 404 Status.  DELETE on a
  collection (deletecollection) works with selectors.
* Pod logs: ``GET .../pods/NAME/log`` is ``text/plain``, 30 lines
  ``line <i> of <pod>``; ``container`` (unknown → 400; required when the pod has
  several containers), ``tailLines``, ``limitBytes``, ``timestamps``,
  ``sinceSeconds``/``sinceTime``, ``follow`` (streams until the container stops),
  ``previous`` (the same text, after tailLines etc., prefixed by a line
  ``previous container of <pod>``; only when the container has a terminated
  ``lastState`` – otherwise 400, like the kubelet).
  A container that is waiting (e.g. ErrImagePull) gives the kubelet's 400 message.
* Controllers (background task, every ~50 ms, writing through this server's own
  HTTP API so watch events flow; reads are from memory):
  - Deployment controller: pods owned by a Deployment (ownerReference with its
    uid, ``controller: true``) are created/deleted to match ``spec.replicas``;
    pod = template labels + ``pod-template-hash``, template annotations and spec,
    generateName ``<deployment>-<hash>-`` (5 random chars).  Template changes roll
    out (RollingUpdate with maxSurge/maxUnavailable, or Recreate): an update that
    cannot become ready leaves the old pod running.  ``.status`` is kept current
    (observedGeneration, replicas, updated/ready/available/unavailableReplicas,
    Available/Progressing conditions incl. ProgressDeadlineExceeded) and written
    only when it changes; zero counts are omitted, as the real API serializes them
    (``omitempty``).  Simplification: no ReplicaSets, pods are owned by the
    Deployment itself.
  - Garbage collector: Foreground/Orphan finalizers, and dependents whose owners
    are all gone are deleted.
  - Scheduler: binds unscheduled pods to node ``kmock-node`` (binding subresource).
  - Kubelet: starts each scheduled pod once by writing its status – Running/Ready
    with podIP 127.0.0.1, or, when a container image contains ``unpullable``,
    Pending with that container waiting in ErrImagePull – and emits the usual
    Events.  It never writes the status of a pod again (tests patch pod status to
    simulate crash loops), and it skips pods whose status someone else already set.
    Pods being deleted are removed after their grace period is acknowledged.

Known gaps (documented, not emulated): namespaces are not a resource and need not
exist; no authentication/authorization, admission, quotas or protobuf; no
ReplicaSets; list ``resourceVersion``/``resourceVersionMatch`` are ignored (lists
are always current); ``continue`` pages are computed from the current state, not
from a snapshot; the SSA model is approximate (fixed list-key table, no schema,
no set-lists); ImagePullBackOff/CrashLoopBackOff transitions are not simulated;
no ``/openapi/v2`` and no server-side Table printing (``kubectl get`` works and shows
NAME/AGE only; ``kubectl apply`` needs ``--validate=false``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import copy
import dataclasses
import datetime
import hashlib
import json
import os
import random
import re
import signal
import sys
import traceback
import uuid
from typing import Any

import aiohttp
import aiohttp.web
import attrs
import jsonpatch
import kmock

try:  # apply bodies are YAML (kube-rs sends JSON, which is YAML); PyYAML is optional
    import yaml
except ImportError:  # pragma: no cover
    yaml = None


# ---------------------------------------------------------------------------------------------
# The served resources.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ResType:
    group: str
    version: str
    plural: str
    kind: str
    singular: str
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_spec: bool = False               # tracks metadata.generation
    return_deleted_object: bool = False  # the real registry's ReturnDeletedObject
    field_selectors: tuple[str, ...] = ()
    name_rule: str = 'subdomain'         # 'subdomain' (RFC 1123) or 'label1035'
    namespaced: bool = True

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def qualified(self) -> str:  # as in messages: 'pods', 'deployments.apps'
        return f'{self.plural}.{self.group}' if self.group else self.plural

    @property
    def qualified_kind(self) -> str:  # as in messages: 'Pod', 'Deployment.apps'
        return f'{self.kind}.{self.group}' if self.group else self.kind

    @property
    def has_status(self) -> bool:
        return 'status' in self.subresources

    @property
    def kmock_resource(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)


CONFIGMAPS = ResType('', 'v1', 'configmaps', 'ConfigMap', 'configmap', short_names=('cm',))
SERVICES = ResType('', 'v1', 'services', 'Service', 'service', subresources=('status',),
                   short_names=('svc',), categories=('all',), has_spec=True,
                   return_deleted_object=True, name_rule='label1035')
PODS = ResType('', 'v1', 'pods', 'Pod', 'pod', subresources=('status', 'log', 'binding'),
               short_names=('po',), categories=('all',), has_spec=True, return_deleted_object=True,
               field_selectors=('spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName',
                                'spec.serviceAccountName', 'spec.hostNetwork', 'status.phase',
                                'status.podIP', 'status.nominatedNodeName'))
EVENTS = ResType('', 'v1', 'events', 'Event', 'event', short_names=('ev',),
                 field_selectors=('involvedObject.kind', 'involvedObject.namespace',
                                  'involvedObject.name', 'involvedObject.uid',
                                  'involvedObject.apiVersion', 'involvedObject.resourceVersion',
                                  'involvedObject.fieldPath', 'reason', 'reportingComponent',
                                  'source', 'type'))
EVENTS_V1 = ResType('events.k8s.io', 'v1', 'events', 'Event', 'event', short_names=('ev',),
                    field_selectors=('regarding.kind', 'regarding.namespace', 'regarding.name',
                                     'regarding.uid', 'regarding.apiVersion', 'reason',
                                     'reportingController', 'type'))
PVCS = ResType('', 'v1', 'persistentvolumeclaims', 'PersistentVolumeClaim',
               'persistentvolumeclaim', subresources=('status',), short_names=('pvc',),
               has_spec=True)
DEPLOYMENTS = ResType('apps', 'v1', 'deployments', 'Deployment', 'deployment',
                      subresources=('status', 'scale'), short_names=('deploy',),
                      categories=('all',), has_spec=True)
TYPES: dict[tuple[str, str, str], ResType] = {
    rt.key: rt for rt in (CONFIGMAPS, SERVICES, PODS, EVENTS, EVENTS_V1, PVCS, DEPLOYMENTS)
}

NODE_NAME = 'kmock-node'
NODE_IP = '127.0.0.1'
POD_IP = '127.0.0.1'
CONTROLLER_INTERVAL = 0.05
BOOKMARK_INTERVAL = 5.0
MAX_EVENT_LOG = 20000
LOG_LINES = 30
INTERNAL_HEADER = 'X-Kmock-Internal'

# Fields that the server owns; clients cannot set them and SSA does not track them.
SYSTEM_META = frozenset({'name', 'namespace', 'uid', 'resourceVersion', 'generation',
                         'creationTimestamp', 'managedFields', 'deletionTimestamp',
                         'deletionGracePeriodSeconds', 'selfLink'})

# Associative lists (patchMergeKey / listMapKeys), by field name, for SMP and SSA.
ASSOC_LIST_KEYS: dict[str, tuple[str, ...]] = {
    'containers': ('name',), 'initContainers': ('name',), 'ephemeralContainers': ('name',),
    'env': ('name',), 'volumes': ('name',), 'volumeMounts': ('mountPath',),
    'volumeDevices': ('devicePath',), 'imagePullSecrets': ('name',),
    'ownerReferences': ('uid',), 'conditions': ('type',), 'hostAliases': ('ip',),
    'resourceClaims': ('name',), 'topologySpreadConstraints': ('topologyKey', 'whenUnsatisfiable'),
    'ports': (),  # ('containerPort', 'protocol') in containers, ('port', 'protocol') in services
}
PRIMITIVE_MERGE_LISTS = frozenset({'finalizers'})  # SMP merges these as sets

SAFE_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'  # k8s.io/apimachinery/pkg/util/rand


# ---------------------------------------------------------------------------------------------
# API errors, rendered as metav1.Status.
# ---------------------------------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def body(self) -> dict:
        body = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                'message': self.message, 'reason': self.reason}
        if self.details:
            body['details'] = self.details
        body['code'] = self.code
        return body


def _details(rt: ResType, name: str | None, **extra: Any) -> dict:
    details: dict[str, Any] = {}
    if name:
        details['name'] = name
    if rt.group:
        details['group'] = rt.group
    details['kind'] = rt.plural
    details.update(extra)
    return details


def not_found(rt: ResType, name: str) -> ApiError:
    return ApiError(404, 'NotFound', f'{rt.qualified} "{name}" not found', _details(rt, name))


def already_exists(rt: ResType, name: str) -> ApiError:
    return ApiError(409, 'AlreadyExists', f'{rt.qualified} "{name}" already exists',
                    _details(rt, name))


def conflict(rt: ResType, name: str, why: str, causes: list | None = None) -> ApiError:
    details = _details(rt, name, **({'causes': causes} if causes else {}))
    return ApiError(409, 'Conflict', f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
                    details)


def modified_conflict(rt: ResType, name: str) -> ApiError:
    return conflict(rt, name, 'the object has been modified; '
                              'please apply your changes to the latest version and try again')


def bad_request(message: str) -> ApiError:
    return ApiError(400, 'BadRequest', message)


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """causes: (field, reason, message) — e.g. ('spec.replicas', 'FieldValueInvalid', '...')."""
    texts = [f'{field}: {msg}' if field else msg for field, _, msg in causes]
    text = texts[0] if len(texts) == 1 else '[' + ', '.join(texts) + ']'
    qkind = f'{kind}.{group}' if group else kind
    details: dict[str, Any] = {'name': name}
    if group:
        details['group'] = group
    details['kind'] = kind
    details['causes'] = [{'reason': r, 'message': m, 'field': f} for f, r, m in causes]
    return ApiError(422, 'Invalid', f'{qkind} "{name}" is invalid: {text}', details)


def invalid_obj(rt: ResType, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    return invalid(rt.kind, rt.group, name, causes)


def required(field: str) -> tuple[str, str, str]:
    return (field, 'FieldValueRequired', 'Required value')


def bad_value(field: str, value: Any, why: str) -> tuple[str, str, str]:
    return (field, 'FieldValueInvalid', f'Invalid value: {json.dumps(value)}: {why}')


def status_success(rt: ResType, name: str, uid: str | None) -> dict:
    return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success',
            'details': _details(rt, name, **({'uid': uid} if uid else {}))}


# ---------------------------------------------------------------------------------------------
# Small helpers.
# ---------------------------------------------------------------------------------------------

def now_rfc3339(offset_seconds: float = 0) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_seconds)
    return t.strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_rfc3339(value: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))
    except (ValueError, AttributeError):
        return None


def random_suffix(n: int = 5) -> str:
    return ''.join(random.choice(SAFE_ALPHABET) for _ in range(n))


def template_hash(template: Any) -> str:
    digest = int(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest(), 16)
    out = ''
    for _ in range(10):
        digest, rem = divmod(digest, len(SAFE_ALPHABET))
        out += SAFE_ALPHABET[rem]
    return out


def truthy(value: str | None) -> bool:
    return (value or '').lower() in ('true', '1')


def meta(obj: dict) -> dict:
    return obj.get('metadata') or {}


def is_deleting(obj: dict) -> bool:
    return bool(meta(obj).get('deletionTimestamp'))


def pod_ready(pod: dict) -> bool:
    for cond in (pod.get('status') or {}).get('conditions') or []:
        if cond.get('type') == 'Ready':
            return cond.get('status') == 'True'
    return False


DNS1123_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')
DNS1123_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
DNS1035_LABEL = re.compile(r'^[a-z]([-a-z0-9]*[a-z0-9])?$')
QUALIFIED_NAME = re.compile(r'^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$')
LABEL_VALUE = re.compile(r'^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$')
CONFIGMAP_KEY = re.compile(r'^[-._a-zA-Z0-9]+$')


def check_name(value: str, rule: str) -> str | None:
    if rule == 'label1035':
        if len(value) > 63:
            return 'must be no more than 63 characters'
        if not DNS1035_LABEL.match(value):
            return ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                    "start with an alphabetic character, and end with an alphanumeric character "
                    "(e.g. 'my-name',  or 'abc-123', regex used for validation is "
                    "'[a-z]([-a-z0-9]*[a-z0-9])?')")
        return None
    if len(value) > 253:
        return 'must be no more than 253 characters'
    if not DNS1123_SUBDOMAIN.match(value):
        return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                "'-' or '.', and must start and end with an alphanumeric character (e.g. "
                "'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    return None


def check_qualified_key(key: str) -> str | None:
    prefix, _, name = key.rpartition('/')
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return 'prefix part must be a lowercase RFC 1123 subdomain'
    if not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                "start and end with an alphanumeric character (at most 63 characters)")
    return None


# ---------------------------------------------------------------------------------------------
# Label & field selectors.
# ---------------------------------------------------------------------------------------------

_SEL_KEY = r'[A-Za-z0-9][-A-Za-z0-9_./]*'
_SEL_SET = re.compile(rf'^\s*({_SEL_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$')
_SEL_EQ = re.compile(rf'^\s*({_SEL_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)\s*$')
_SEL_EXISTS = re.compile(rf'^\s*(!?)\s*({_SEL_KEY})\s*$')


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, ''
    for ch in text:
        if ch == '(':
            depth += 1
        elif ch == ')':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    reqs = []
    for term in _split_top_level(text or ''):
        if m := _SEL_SET.match(term):
            values = tuple(v.strip() for v in m.group(3).split(',') if v.strip())
            reqs.append((m.group(1), m.group(2), values))
        elif m := _SEL_EQ.match(term):
            reqs.append((m.group(1), '!=' if m.group(2) == '!=' else '=', (m.group(3),)))
        elif m := _SEL_EXISTS.match(term):
            reqs.append((m.group(2), '!' if m.group(1) else 'exists', ()))
        else:
            raise bad_request(f'unable to parse requirement: found \'{term.strip()}\', '
                              f'expected: in, notin, =, ==, !=, gt, lt')
    return reqs


def labels_match(reqs: list, labels: dict | None) -> bool:
    labels = labels or {}
    for key, op, values in reqs:
        present = key in labels
        value = labels.get(key)
        if op == 'exists' and not present:
            return False
        if op == '!' and present:
            return False
        if op == '=' and value != values[0]:
            return False
        if op == '!=' and present and value == values[0]:
            return False
        if op == 'in' and (not present or value not in values):
            return False
        if op == 'notin' and present and value in values:
            return False
    return True


def parse_field_selector(text: str, rt: ResType) -> list[tuple[str, str, str]]:
    allowed = ('metadata.name', 'metadata.namespace') + rt.field_selectors
    reqs = []
    for term in _split_top_level(text or ''):
        m = re.match(r'^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$', term)
        if not m:
            raise bad_request(f'invalid selector: \'{text}\'; can\'t understand \'{term}\'')
        field, op, value = m.groups()
        if field not in allowed:
            raise bad_request(f'field label not supported: {field}')
        reqs.append((field, '!=' if op == '!=' else '=', value))
    return reqs


def field_value(obj: dict, field: str) -> str:
    if field == 'source':
        field = 'source.component'
    cur: Any = obj
    for part in field.split('.'):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if cur is None:
        return ''
    if isinstance(cur, bool):
        return 'true' if cur else 'false'
    return str(cur)


def fields_match(reqs: list, obj: dict) -> bool:
    for field, op, value in reqs:
        actual = field_value(obj, field)
        if (op == '=') != (actual == value):
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Patch algorithms: JSON merge patch, strategic merge patch, server-side apply field sets.
# ---------------------------------------------------------------------------------------------

MISSING: Any = object()


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def list_key_fields(field: str | None, item: Any) -> tuple[str, ...] | None:
    if field not in ASSOC_LIST_KEYS or not isinstance(item, dict):
        return None
    if field == 'ports':
        return ('containerPort', 'protocol') if 'containerPort' in item else ('port', 'protocol')
    return ASSOC_LIST_KEYS[field]


def item_key(field: str | None, item: Any) -> tuple | None:
    keys = list_key_fields(field, item)
    if keys is None:
        return None
    return tuple((k, item.get(k, 'TCP' if k == 'protocol' else None)) for k in keys)


def is_assoc_list(field: str | None, value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and field in ASSOC_LIST_KEYS
            and all(isinstance(i, dict) for i in value))


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith('$')}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def strategic_merge(target: Any, patch: Any) -> Any:
    """A subset of the strategic merge patch: merge keys from ASSOC_LIST_KEYS, $patch directives."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return _strip_directives(copy.deepcopy(patch))
    if patch.get('$patch') == 'replace':
        return _strip_directives(copy.deepcopy(patch))
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if key.startswith('$'):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            if value.get('$patch') == 'delete':
                result.pop(key, None)
            else:
                result[key] = strategic_merge(result.get(key) if isinstance(result.get(key), dict) else {}, value)
        elif isinstance(value, list):
            result[key] = _strategic_merge_list(result.get(key), value, key)
        else:
            result[key] = value
    for key, value in patch.items():
        if key.startswith('$deleteFromPrimitiveList/') and isinstance(value, list):
            field = key.split('/', 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
    return result


def _strategic_merge_list(current: Any, patch: list, field: str) -> list:
    if field in PRIMITIVE_MERGE_LISTS and isinstance(current, list):
        return current + [v for v in patch if v not in current]
    if not isinstance(current, list) or field not in ASSOC_LIST_KEYS or not all(isinstance(i, dict) for i in patch):
        return _strip_directives(copy.deepcopy(patch))
    if any(i.get('$patch') == 'replace' for i in patch):
        return [_strip_directives(i) for i in patch if i.get('$patch') != 'replace']
    result = copy.deepcopy(current)
    for item in patch:
        key = item_key(field, item)
        index = next((n for n, cur in enumerate(result) if item_key(field, cur) == key), None)
        if item.get('$patch') == 'delete':
            if index is not None:
                del result[index]
        elif index is not None:
            result[index] = strategic_merge(result[index], item)
        else:
            result.append(_strip_directives(copy.deepcopy(item)))
    return result


def strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


# A field path is a tuple of segments: a str (map key) or ('k', key) for an associative list item.
def field_paths(value: Any, prefix: tuple = (), field: str | None = None) -> set[tuple]:
    out: set[tuple] = set()
    if isinstance(value, dict):
        if not value and prefix:
            out.add(prefix)
        for key, sub in value.items():
            out |= field_paths(sub, prefix + (key,), key)
    elif is_assoc_list(field, value):
        for item in value:
            item_path = prefix + (('k', item_key(field, item)),)
            out.add(item_path)  # the item itself ("." in fieldsV1)
            out |= field_paths(item, item_path, None)
    elif prefix:
        out.add(prefix)  # a scalar or an atomic list
    return out


def is_item_path(path: tuple) -> bool:
    return bool(path) and isinstance(path[-1], tuple)


def get_path(obj: Any, path: tuple) -> Any:
    cur, field = obj, None
    for seg in path:
        if isinstance(seg, tuple):
            if not isinstance(cur, list):
                return MISSING
            cur = next((i for i in cur if item_key(field, i) == seg[1]), MISSING)
            if cur is MISSING:
                return MISSING
        else:
            if not isinstance(cur, dict) or seg not in cur:
                return MISSING
            cur, field = cur[seg], seg
    return cur


def delete_path(obj: Any, path: tuple) -> None:
    parent = get_path(obj, path[:-1])
    last = path[-1]
    if isinstance(last, tuple):
        field = next((s for s in reversed(path[:-1]) if isinstance(s, str)), None)
        if isinstance(parent, list):
            parent[:] = [i for i in parent if item_key(field, i) != last[1]]
    elif isinstance(parent, dict):
        parent.pop(last, None)


def diff_paths(old: Any, new: Any) -> set[tuple]:
    changed = set()
    for path in field_paths(old) | field_paths(new):
        a, b = get_path(old, path), get_path(new, path)
        if is_item_path(path):
            if (a is MISSING) != (b is MISSING):
                changed.add(path)
        elif a != b:
            changed.add(path)
    return changed


def ssa_merge(current: Any, config: Any, field: str | None = None) -> Any:
    if isinstance(current, dict) and isinstance(config, dict):
        result = copy.deepcopy(current)
        for key, value in config.items():
            result[key] = ssa_merge(current[key], value, key) if key in current else copy.deepcopy(value)
        return result
    if is_assoc_list(field, config) and isinstance(current, list) and all(isinstance(i, dict) for i in current):
        result = []
        keys = set()
        for item in config:
            key = item_key(field, item)
            keys.add(key)
            existing = next((i for i in current if item_key(field, i) == key), None)
            result.append(ssa_merge(existing, item) if existing is not None else copy.deepcopy(item))
        result += [copy.deepcopy(i) for i in current if item_key(field, i) not in keys]
        return result
    return copy.deepcopy(config)


def fields_v1(paths: set[tuple]) -> dict:
    trie: dict = {}
    for path in sorted(paths, key=repr):
        node = trie
        for seg in path:
            if isinstance(seg, tuple):
                key = 'k:' + json.dumps(dict(seg[1]), separators=(',', ':'), sort_keys=True)
            else:
                key = 'f:' + seg
            node = node.setdefault(key, {})
        if is_item_path(path):
            node.setdefault('.', {})
    return trie


def path_text(path: tuple) -> str:
    out = ''
    for seg in path:
        out += f'[{",".join(f"{k}={v}" for k, v in seg[1])}]' if isinstance(seg, tuple) else f'.{seg}'
    return out


# ---------------------------------------------------------------------------------------------
# Defaulting, decoding checks (400) and validation (422), per kind.
# ---------------------------------------------------------------------------------------------

def _image_pull_policy(image: str) -> str:
    if '@' in image:
        return 'IfNotPresent'
    tail = image.rsplit('/', 1)[-1]
    if ':' in tail and tail.rsplit(':', 1)[1] != 'latest':
        return 'IfNotPresent'
    return 'Always'


def default_pod_spec(spec: dict) -> None:
    spec.setdefault('restartPolicy', 'Always')
    spec.setdefault('terminationGracePeriodSeconds', 30)
    spec.setdefault('dnsPolicy', 'ClusterFirst')
    spec.setdefault('securityContext', {})
    spec.setdefault('schedulerName', 'default-scheduler')
    for key in ('initContainers', 'containers'):
        for container in spec.get(key) or []:
            if not isinstance(container, dict):
                continue
            container.setdefault('terminationMessagePath', '/dev/termination-log')
            container.setdefault('terminationMessagePolicy', 'File')
            if isinstance(container.get('image'), str):
                container.setdefault('imagePullPolicy', _image_pull_policy(container['image']))
            container.setdefault('resources', {})
            for port in container.get('ports') or []:
                if isinstance(port, dict):
                    port.setdefault('protocol', 'TCP')


def qos_class(spec: dict) -> str:
    containers = [c for c in (spec.get('containers') or []) + (spec.get('initContainers') or [])
                  if isinstance(c, dict)]
    any_set, guaranteed = False, True
    for c in containers:
        res = c.get('resources') or {}
        limits, requests = res.get('limits') or {}, res.get('requests') or {}
        if limits or requests:
            any_set = True
        for r in ('cpu', 'memory'):
            if r not in limits or requests.get(r, limits.get(r)) != limits.get(r):
                guaranteed = False
    if not any_set:
        return 'BestEffort'
    return 'Guaranteed' if guaranteed else 'Burstable'


_GO_TYPES = {str: 'string', int: 'int32', bool: 'bool', dict: 'map', list: 'slice'}
_JSON_TYPES = {str: 'string', int: 'number', float: 'number', bool: 'bool', dict: 'object',
               list: 'array', type(None): 'null'}


def _typecheck(rt: ResType, value: Any, expected: type, where: str) -> None:
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if not ok and value is not None:
        raise bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: cannot '
            f'unmarshal {_JSON_TYPES.get(type(value), "value")} into Go struct field {where} '
            f'of type {_GO_TYPES.get(expected, expected.__name__)}')


def _typecheck_str_map(rt: ResType, value: Any, where: str) -> None:
    _typecheck(rt, value, dict, where)
    for v in (value or {}).values():
        _typecheck(rt, v, str, where)


def _typecheck_pod_spec(rt: ResType, spec: Any, where: str) -> None:
    _typecheck(rt, spec, dict, where)
    for key in ('containers', 'initContainers'):
        _typecheck(rt, (spec or {}).get(key), list, f'{where}.{key}')
        for c in (spec or {}).get(key) or []:
            _typecheck(rt, c, dict, f'{where}.{key}')
            for f in ('name', 'image'):
                _typecheck(rt, c.get(f), str, f'Container.{key}.{f}')
            _typecheck(rt, c.get('args'), list, f'Container.{key}.args')
            _typecheck(rt, c.get('command'), list, f'Container.{key}.command')
            _typecheck(rt, c.get('ports'), list, f'Container.{key}.ports')
            for p in c.get('ports') or []:
                _typecheck(rt, p, dict, 'Container.ports')
                _typecheck(rt, p.get('containerPort'), int, 'ContainerPort.ports.containerPort')
            _typecheck(rt, c.get('env'), list, f'Container.{key}.env')
            for e in c.get('env') or []:
                _typecheck(rt, e, dict, 'Container.env')
                _typecheck(rt, e.get('name'), str, 'EnvVar.env.name')
                _typecheck(rt, e.get('value'), str, 'EnvVar.env.value')


def typecheck(rt: ResType, obj: dict) -> None:
    """The real server fails to decode mistyped fields with 400; check the commonly hit ones."""
    _typecheck(rt, obj.get('metadata'), dict, f'{rt.kind}.metadata')
    md = meta(obj)
    _typecheck_str_map(rt, md.get('labels'), 'ObjectMeta.metadata.labels')
    _typecheck_str_map(rt, md.get('annotations'), 'ObjectMeta.metadata.annotations')
    _typecheck(rt, md.get('finalizers'), list, 'ObjectMeta.metadata.finalizers')
    _typecheck(rt, md.get('ownerReferences'), list, 'ObjectMeta.metadata.ownerReferences')
    if rt is CONFIGMAPS:
        _typecheck_str_map(rt, obj.get('data'), 'ConfigMap.data')
        _typecheck_str_map(rt, obj.get('binaryData'), 'ConfigMap.binaryData')
    if rt is PODS:
        _typecheck_pod_spec(rt, obj.get('spec'), 'Pod.spec')
    if rt is DEPLOYMENTS:
        spec = obj.get('spec')
        _typecheck(rt, spec, dict, 'Deployment.spec')
        _typecheck(rt, (spec or {}).get('replicas'), int, 'DeploymentSpec.spec.replicas')
        tpl = (spec or {}).get('template')
        _typecheck(rt, tpl, dict, 'DeploymentSpec.spec.template')
        _typecheck(rt, (tpl or {}).get('metadata'), dict, 'PodTemplateSpec.spec.template.metadata')
        _typecheck_str_map(rt, ((tpl or {}).get('metadata') or {}).get('labels'),
                           'ObjectMeta.spec.template.metadata.labels')
        _typecheck_pod_spec(rt, (tpl or {}).get('spec'), 'PodTemplateSpec.spec.template.spec')
    if rt is SERVICES:
        spec = obj.get('spec')
        _typecheck(rt, spec, dict, 'Service.spec')
        _typecheck(rt, (spec or {}).get('ports'), list, 'ServiceSpec.spec.ports')
        for p in (spec or {}).get('ports') or []:
            _typecheck(rt, p, dict, 'ServiceSpec.spec.ports')
            _typecheck(rt, p.get('port'), int, 'ServicePort.spec.ports.port')
        _typecheck_str_map(rt, (spec or {}).get('selector'), 'ServiceSpec.spec.selector')


def resolve_int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.endswith('%'):
        try:
            pct = int(value[:-1])
        except ValueError:
            return 0
        scaled = total * pct
        return -(-scaled // 100) if round_up else scaled // 100
    return 0


def default_deployment(obj: dict) -> None:
    spec = obj.setdefault('spec', {})
    if not isinstance(spec, dict):
        return
    spec.setdefault('replicas', 1)
    spec.setdefault('revisionHistoryLimit', 10)
    spec.setdefault('progressDeadlineSeconds', 600)
    strategy = spec.setdefault('strategy', {})
    if isinstance(strategy, dict):
        strategy.setdefault('type', 'RollingUpdate')
        if strategy['type'] == 'RollingUpdate':
            ru = strategy.setdefault('rollingUpdate', {})
            if isinstance(ru, dict):
                ru.setdefault('maxUnavailable', '25%')
                ru.setdefault('maxSurge', '25%')
    template = spec.get('template')
    if isinstance(template, dict) and isinstance(template.get('spec'), dict):
        default_pod_spec(template['spec'])


def selector_matches_labels(selector: dict, labels: dict) -> bool:
    reqs = [(k, '=', (v,)) for k, v in (selector.get('matchLabels') or {}).items()]
    for expr in selector.get('matchExpressions') or []:
        op = {'In': 'in', 'NotIn': 'notin', 'Exists': 'exists', 'DoesNotExist': '!'}.get(expr.get('operator'))
        if op is None:
            return False
        reqs.append((expr.get('key'), op, tuple(expr.get('values') or ())))
    return labels_match(reqs, labels)


def selector_string(selector: dict) -> str:
    parts = [f'{k}={v}' for k, v in sorted((selector.get('matchLabels') or {}).items())]
    for expr in selector.get('matchExpressions') or []:
        op, key, values = expr.get('operator'), expr.get('key'), ','.join(expr.get('values') or ())
        parts.append({'In': f'{key} in ({values})', 'NotIn': f'{key} notin ({values})',
                      'Exists': key, 'DoesNotExist': f'!{key}'}.get(op, ''))
    return ','.join(p for p in parts if p)


def validate_meta(rt: ResType, obj: dict, creating: bool, prefix: str = 'metadata') -> list:
    causes = []
    md = meta(obj)
    if creating and prefix == 'metadata':
        why = check_name(md.get('name', ''), rt.name_rule)
        if why:
            causes.append(bad_value('metadata.name', md.get('name'), why))
    for key, value in (md.get('labels') or {}).items():
        why = check_qualified_key(key)
        if why:
            causes.append(bad_value(f'{prefix}.labels', key, why))
        elif len(value) > 63 or not LABEL_VALUE.match(value):
            causes.append(bad_value(f'{prefix}.labels', value,
                                    "a valid label must be an empty string or consist of alphanumeric "
                                    "characters, '-', '_' or '.', and must start and end with an "
                                    "alphanumeric character (at most 63 characters)"))
    for key in (md.get('annotations') or {}):
        why = check_qualified_key(key)
        if why:
            causes.append(bad_value(f'{prefix}.annotations', key, why))
    for ref in md.get('ownerReferences') or []:
        for field in ('apiVersion', 'kind', 'name', 'uid'):
            if not (ref or {}).get(field):
                causes.append(bad_value(f'{prefix}.ownerReferences.{field}', (ref or {}).get(field, ''),
                                        f'{field} must not be empty'))
    return causes


def validate_pod_spec(spec: Any, prefix: str) -> list:
    causes = []
    if not isinstance(spec, dict):
        return [required(prefix)]
    containers = spec.get('containers') or []
    if not containers:
        causes.append(required(f'{prefix}.containers'))
    seen = set()
    for key in ('initContainers', 'containers'):
        for n, c in enumerate(spec.get(key) or []):
            where = f'{prefix}.{key}[{n}]'
            name = c.get('name')
            if not name:
                causes.append(required(f'{where}.name'))
            elif len(name) > 63 or not DNS1123_LABEL.match(name):
                causes.append(bad_value(f'{where}.name', name,
                                        'a lowercase RFC 1123 label must consist of lower case '
                                        "alphanumeric characters or '-', and must start and end "
                                        'with an alphanumeric character'))
            elif name in seen:
                causes.append((f'{where}.name', 'FieldValueDuplicate', f'Duplicate value: "{name}"'))
            seen.add(name)
            if not c.get('image'):
                causes.append(required(f'{where}.image'))
            for m, port in enumerate(c.get('ports') or []):
                cp = port.get('containerPort')
                if not isinstance(cp, int) or not 1 <= cp <= 65535:
                    causes.append(bad_value(f'{where}.ports[{m}].containerPort', cp,
                                            'must be between 1 and 65535, inclusive'))
    policy = spec.get('restartPolicy')
    if policy not in ('Always', 'OnFailure', 'Never'):
        causes.append((f'{prefix}.restartPolicy', 'FieldValueNotSupported',
                       f'Unsupported value: {json.dumps(policy)}: supported values: '
                       '"Always", "OnFailure", "Never"'))
    return causes


def validate(rt: ResType, obj: dict, old: dict | None) -> list:
    causes = validate_meta(rt, obj, creating=old is None)
    spec = obj.get('spec') or {}
    old_spec = (old or {}).get('spec') or {}
    if rt is DEPLOYMENTS:
        selector = spec.get('selector')
        tpl = spec.get('template') or {}
        tpl_labels = (tpl.get('metadata') or {}).get('labels') or {}
        if not selector:
            causes.append(required('spec.selector'))
        elif not (selector.get('matchLabels') or selector.get('matchExpressions')):
            causes.append(bad_value('spec.selector', selector,
                                    'empty selector is invalid for deployment'))
        elif not selector_matches_labels(selector, tpl_labels):
            causes.append(bad_value('spec.template.metadata.labels', tpl_labels,
                                    '`selector` does not match template `labels`'))
        if old is not None and old_spec.get('selector') != selector:
            causes.append(bad_value('spec.selector', selector, 'field is immutable'))
        replicas = spec.get('replicas')
        if isinstance(replicas, int) and replicas < 0:
            causes.append(bad_value('spec.replicas', replicas, 'must be greater than or equal to 0'))
        causes += validate_meta(rt, tpl, creating=False, prefix='spec.template.metadata')
        causes += validate_pod_spec(tpl.get('spec'), 'spec.template.spec')
        if (tpl.get('spec') or {}).get('restartPolicy') not in (None, 'Always'):
            causes.append(('spec.template.spec.restartPolicy', 'FieldValueNotSupported',
                           f'Unsupported value: {json.dumps(tpl["spec"]["restartPolicy"])}: '
                           'supported values: "Always"'))
        strategy = spec.get('strategy') or {}
        if strategy.get('type') not in ('RollingUpdate', 'Recreate'):
            causes.append(('spec.strategy.type', 'FieldValueNotSupported',
                           f'Unsupported value: {json.dumps(strategy.get("type"))}: supported values: '
                           '"Recreate", "RollingUpdate"'))
        elif strategy.get('type') == 'RollingUpdate':
            ru = strategy.get('rollingUpdate') or {}
            if (resolve_int_or_percent(ru.get('maxSurge'), 100, True) == 0
                    and resolve_int_or_percent(ru.get('maxUnavailable'), 100, False) == 0):
                causes.append(bad_value('spec.strategy.rollingUpdate.maxUnavailable',
                                        ru.get('maxUnavailable'),
                                        'may not be 0 when `maxSurge` is 0'))
        elif strategy.get('rollingUpdate'):
            causes.append(('spec.strategy.rollingUpdate', 'FieldValueForbidden',
                           'Forbidden: may not be specified when strategy `type` is \'Recreate\''))
    elif rt is PODS:
        causes += validate_pod_spec(spec, 'spec')
        if old is not None:
            def mutable_view(s: dict) -> dict:
                s = copy.deepcopy(s)
                for key in ('activeDeadlineSeconds', 'tolerations', 'terminationGracePeriodSeconds'):
                    s.pop(key, None)
                for key in ('containers', 'initContainers'):
                    for c in s.get(key) or []:
                        c.pop('image', None)
                return s
            if mutable_view(spec) != mutable_view(old_spec):
                causes.append(('spec', 'FieldValueForbidden',
                               'Forbidden: pod updates may not change fields other than '
                               '`spec.containers[*].image`,`spec.initContainers[*].image`,'
                               '`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to '
                               'existing tolerations),`spec.terminationGracePeriodSeconds` '
                               '(allow it to be set to 1 if it was previously negative)'))
    elif rt is SERVICES:
        stype = spec.get('type', 'ClusterIP')
        if stype not in ('ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'):
            causes.append(('spec.type', 'FieldValueNotSupported',
                           f'Unsupported value: {json.dumps(stype)}: supported values: "ClusterIP", '
                           '"ExternalName", "LoadBalancer", "NodePort"'))
        ports = spec.get('ports') or []
        if not ports and stype != 'ExternalName' and spec.get('clusterIP') != 'None':
            causes.append(required('spec.ports'))
        names = set()
        for n, port in enumerate(ports):
            p = port.get('port')
            if not isinstance(p, int) or not 1 <= p <= 65535:
                causes.append(bad_value(f'spec.ports[{n}].port', p, 'must be between 1 and 65535, inclusive'))
            if len(ports) > 1 and not port.get('name'):
                causes.append(required(f'spec.ports[{n}].name'))
            if port.get('name') in names:
                causes.append((f'spec.ports[{n}].name', 'FieldValueDuplicate',
                               f'Duplicate value: "{port["name"]}"'))
            names.add(port.get('name'))
        old_ip = old_spec.get('clusterIP')
        if old is not None and old_ip and spec.get('clusterIP') not in (None, '', old_ip):
            causes.append(bad_value('spec.clusterIPs[0]', [spec.get('clusterIP')], 'may not change once set'))
    elif rt is CONFIGMAPS:
        for key in list((obj.get('data') or {})) + list((obj.get('binaryData') or {})):
            if not CONFIGMAP_KEY.match(key) or len(key) > 253:
                causes.append(bad_value('data', key, "a valid config key must consist of alphanumeric "
                                                     "characters, '-', '_' or '.'"))
        if old is not None and old.get('immutable'):
            if obj.get('data') != old.get('data') or obj.get('binaryData') != old.get('binaryData'):
                causes.append(('data', 'FieldValueForbidden',
                               'Forbidden: field is immutable when `immutable` is set'))
            if obj.get('immutable') is not True:
                causes.append(('immutable', 'FieldValueForbidden',
                               'Forbidden: field is immutable when `immutable` is set'))
    elif rt is EVENTS:
        if not obj.get('involvedObject'):
            causes.append(required('involvedObject'))
    return causes


# ---------------------------------------------------------------------------------------------
# The API server: a kmock KubernetesEmulator with real-server semantics.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ApiPath:
    group: str
    version: str
    namespace: str | None
    plural: str
    name: str | None
    subresource: str | None


def parse_api_path(path: str) -> ApiPath | None:
    """/api/v1[/namespaces/NS]/PLURAL[/NAME[/SUB]] and /apis/G/V/...; None for discovery paths."""
    parts = [p for p in path.split('/') if p]
    if len(parts) >= 2 and parts[0] == 'api':
        group, version, rest = '', parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == 'apis':
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = None
    if rest[0] == 'namespaces' and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    return ApiPath(group, version, namespace, rest[0], rest[1] if len(rest) > 1 else None,
                   '/'.join(rest[2:]) or None)


@dataclasses.dataclass
class LoggedEvent:
    rv: int
    rtkey: tuple
    namespace: str | None
    type: str
    obj: dict
    prev: dict | None


@attrs.define(kw_only=True)
class FakeKubernetes(kmock.KubernetesEmulator):
    requests_path: str | None = None
    verbose: bool = False
    internal_token: str = attrs.field(factory=lambda: uuid.uuid4().hex)

    _rv: int = attrs.field(default=0, init=False)
    _event_log: list = attrs.field(factory=list, init=False)
    _event_rvs: list = attrs.field(factory=list, init=False)
    _log_floor: int = attrs.field(default=0, init=False)
    _changed: asyncio.Event | None = attrs.field(default=None, init=False)
    _managed: dict = attrs.field(factory=dict, init=False)
    _requests_fh: Any = attrs.field(default=None, init=False)
    _next_ip: int = attrs.field(default=10, init=False)
    _next_node_port: int = attrs.field(default=30000, init=False)
    stopping: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for rt in TYPES.values():
            self.resources[rt.kmock_resource] = kmock.ResourceInfo(
                namespaced=rt.namespaced, kind=rt.kind, singular=rt.singular,
                verbs={'create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'},
                shortnames=set(rt.short_names), categories=set(rt.categories),
                subresources=set(rt.subresources))
        if self.requests_path:
            self._requests_fh = open(self.requests_path, 'a', encoding='utf-8')

    # -- discovery tweaks (served by kmock's KubernetesScaffold) ---------------------------------

    async def _serve_server_version(self, request: Any) -> Any:
        return {'major': '1', 'minor': '32', 'gitVersion': 'v1.32.0-kmock',
                'gitCommit': '0000000000000000000000000000000000000000', 'gitTreeState': 'clean',
                'buildDate': '2025-01-01T00:00:00Z', 'goVersion': 'go1.23.0', 'compiler': 'gc',
                'platform': 'linux/amd64'}

    async def _serve_version(self, request: Any) -> Any:
        group, version = request.resource.group, request.resource.version
        types = [rt for rt in TYPES.values() if (rt.group, rt.version) == (group, version)]
        if not types:
            return await super()._serve_version(request)
        sub_info = {'status': (None, ['get', 'patch', 'update']),
                    'scale': ({'group': 'autoscaling', 'version': 'v1', 'kind': 'Scale'},
                              ['get', 'patch', 'update']),
                    'log': ({'kind': 'Pod'}, ['get']),
                    'binding': ({'kind': 'Binding'}, ['create'])}
        resources = []
        for rt in types:
            resources.append({'name': rt.plural, 'singularName': rt.singular, 'namespaced': rt.namespaced,
                              'kind': rt.kind, 'verbs': ['create', 'delete', 'deletecollection', 'get',
                                                         'list', 'patch', 'update', 'watch'],
                              'shortNames': list(rt.short_names), 'categories': list(rt.categories)})
            for sub in rt.subresources:
                extra, verbs = sub_info[sub]
                entry = {'name': f'{rt.plural}/{sub}', 'singularName': '', 'namespaced': rt.namespaced,
                         'kind': rt.kind, 'verbs': verbs}
                entry.update(extra or {})
                resources.append(entry)
        return {'kind': 'APIResourceList', 'apiVersion': 'v1',
                'groupVersion': f'{group}/{version}' if group else version, 'resources': resources}

    # -- storage & watch log ---------------------------------------------------------------------

    def _okey(self, rt: ResType, ns: str | None, name: str) -> tuple:
        return (rt.kmock_resource, ns if rt.namespaced else None, name)

    def get_object(self, rt: ResType, ns: str | None, name: str) -> dict | None:
        """The current stored object (treat it as read-only) or None."""
        key = self._okey(rt, ns, name)
        if key not in self.objects:
            return None
        obj = self.objects[key]
        return None if obj.deleted else obj.raw

    def list_objects(self, rt: ResType, ns: str | None = None) -> list[dict]:
        """Current objects of a type (read-only), sorted by namespace and name like etcd keys."""
        out = []
        for (res, ons, name), obj in self.objects.items():
            if res == rt.kmock_resource and (ns is None or ons == ns) and not obj.deleted:
                out.append(((ons or '', name), obj.raw))
        return [obj for _, obj in sorted(out, key=lambda pair: pair[0])]

    def all_objects(self) -> list[tuple[ResType, dict]]:
        return [(rt, obj) for rt in TYPES.values() for obj in self.list_objects(rt)]

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
        self._changed = asyncio.Event()

    def _log_event(self, rt: ResType, type_: str, obj: dict, prev: dict | None) -> None:
        rv = int(obj['metadata']['resourceVersion'])
        self._event_log.append(LoggedEvent(rv, rt.key, meta(obj).get('namespace'), type_, obj, prev))
        self._event_rvs.append(rv)
        if len(self._event_log) > MAX_EVENT_LOG:
            cut = len(self._event_log) // 2
            self._log_floor = self._event_rvs[cut - 1]
            del self._event_log[:cut]
            del self._event_rvs[:cut]
        self._notify()

    def _store(self, rt: ResType, ns: str | None, name: str, old: dict | None, new: dict) -> dict:
        new['metadata']['resourceVersion'] = self._next_rv()
        key = self._okey(rt, ns, name)
        if key in self.objects:
            self.objects[key].history.append(new)
        else:
            self.objects[key] = new
        self._log_event(rt, 'MODIFIED' if old is not None else 'ADDED', new, old)
        return new

    def _remove(self, rt: ResType, ns: str | None, name: str, old: dict) -> dict:
        final = copy.deepcopy(old)
        final['metadata']['resourceVersion'] = self._next_rv()
        self.objects[self._okey(rt, ns, name)].delete()
        self._managed.pop(self._okey(rt, ns, name), None)
        self._log_event(rt, 'DELETED', final, old)
        return final

    # -- the write pipeline -----------------------------------------------------------------------

    @staticmethod
    def _ownable(rt: ResType, sub: str | None, path: tuple) -> bool:
        if not path or path[0] in ('apiVersion', 'kind'):
            return False
        if path[0] == 'metadata' and (len(path) == 1 or path[1] in SYSTEM_META):
            return False
        if rt.has_status:
            return path[0] == 'status' if sub == 'status' else path[0] != 'status'
        return True

    def _prepare(self, rt: ResType, ns: str | None, name: str, old: dict | None, new: dict, *,
                 manager: str, operation: str, sub: str | None,
                 applied: set[tuple] | None = None, managed: dict | None = None) -> dict:
        """Turn a desired object into the object to store: strategies, defaults, validation, metadata."""
        now = now_rfc3339()
        new = copy.deepcopy(new)
        typecheck(rt, new)
        if sub == 'status' and old is not None:
            status = new.get('status')
            new = copy.deepcopy(old)
            if status is None:
                new.pop('status', None)
            else:
                new['status'] = status
        elif rt.has_status:
            if old is not None:
                if 'status' in old:
                    new['status'] = copy.deepcopy(old['status'])
                else:
                    new.pop('status', None)
            else:
                new['status'] = self._initial_status(rt, new)
        new['apiVersion'] = rt.api_version
        new['kind'] = rt.kind
        md = new.setdefault('metadata', {})
        md['name'] = name
        if rt.namespaced:
            md['namespace'] = ns
        else:
            md.pop('namespace', None)
        for key in ('managedFields', 'selfLink'):
            md.pop(key, None)
        if old is not None:
            old_md = meta(old)
            for key in ('uid', 'creationTimestamp', 'generation', 'deletionTimestamp',
                        'deletionGracePeriodSeconds', 'resourceVersion'):
                if key in old_md:
                    md[key] = old_md[key]
                else:
                    md.pop(key, None)
        else:
            for key in ('deletionTimestamp', 'deletionGracePeriodSeconds', 'resourceVersion', 'generation'):
                md.pop(key, None)
            md['uid'] = str(uuid.uuid4())
            md['creationTimestamp'] = now
            if rt.has_spec:
                md['generation'] = 1
        self._default(rt, new)
        causes = validate(rt, new, old)
        if causes:
            raise invalid_obj(rt, name, causes)
        if old is not None and rt.has_spec and new.get('spec') != old.get('spec'):
            md['generation'] = int(meta(old).get('generation') or 1) + 1

        # Field ownership (managedFields).
        okey = self._okey(rt, ns, name)
        managed = copy.deepcopy(managed if managed is not None else self._managed.get(okey, {}))
        me = (manager, operation, sub)
        if operation == 'Apply':
            paths = {p for p in (applied or set()) if self._ownable(rt, sub, p)}
        else:
            changed = {p for p in diff_paths(old or {}, new) if self._ownable(rt, sub, p)}
            for other, entry in managed.items():
                if other != me:
                    entry['paths'] = {p for p in entry['paths']
                                      if not any(p[:len(c)] == c for c in changed)}
            mine = managed.get(me, {}).get('paths', set())
            paths = mine | {p for p in changed if get_path(new, p) is not MISSING}
        previous = managed.get(me)
        if previous is None or previous['paths'] != paths:
            managed[me] = {'paths': paths, 'time': now}
        managed = {m: e for m, e in managed.items() if e['paths']}
        md['managedFields'] = [
            {'manager': m, 'operation': op, 'apiVersion': rt.api_version, 'time': e['time'],
             'fieldsType': 'FieldsV1', 'fieldsV1': fields_v1(e['paths']),
             **({'subresource': s} if s else {})}
            for (m, op, s), e in managed.items()
        ]
        new['_managed'] = managed  # carried to _commit, stripped there
        return new

    def _commit(self, rt: ResType, ns: str | None, name: str, old: dict | None, new: dict,
                dry_run: bool = False) -> dict:
        """Store a prepared object (unless it is a no-op or a dry run) and emit the watch event."""
        managed = new.pop('_managed', None)
        if old is not None:
            new['metadata']['resourceVersion'] = meta(old).get('resourceVersion')
            if new == old:
                return old  # a no-op: no new resourceVersion, no event
        if dry_run:
            new['metadata'].setdefault('resourceVersion', meta(old or {}).get('resourceVersion', ''))
            return new
        stored = self._store(rt, ns, name, old, new)
        if managed is not None:
            self._managed[self._okey(rt, ns, name)] = managed
        md = stored['metadata']
        if md.get('deletionTimestamp') and not md.get('finalizers'):
            if rt is not PODS or md.get('deletionGracePeriodSeconds') == 0:
                self._remove(rt, ns, name, stored)
        return stored

    def _initial_status(self, rt: ResType, obj: dict) -> dict:
        if rt is PODS:
            return {'phase': 'Pending', 'qosClass': qos_class(obj.get('spec') or {})}
        if rt is SERVICES:
            return {'loadBalancer': {}}
        return {}

    def _default(self, rt: ResType, obj: dict) -> None:
        if rt is DEPLOYMENTS:
            default_deployment(obj)
        elif rt is PODS and isinstance(obj.get('spec'), dict):
            default_pod_spec(obj['spec'])
            obj['spec'].setdefault('enableServiceLinks', True)
            obj['spec'].setdefault('priority', 0)
        elif rt is SERVICES and isinstance(obj.get('spec'), dict):
            spec = obj['spec']
            spec.setdefault('type', 'ClusterIP')
            spec.setdefault('sessionAffinity', 'None')
            if spec['type'] != 'ExternalName':
                if not spec.get('clusterIP'):
                    spec['clusterIP'] = f'10.96.{self._next_ip // 250}.{self._next_ip % 250 + 1}'
                    self._next_ip += 1
                spec.setdefault('clusterIPs', [spec['clusterIP']])
                if spec['clusterIP'] != 'None':
                    spec.setdefault('ipFamilies', ['IPv4'])
                    spec.setdefault('ipFamilyPolicy', 'SingleStack')
                spec.setdefault('internalTrafficPolicy', 'Cluster')
            if spec['type'] in ('NodePort', 'LoadBalancer'):
                spec.setdefault('externalTrafficPolicy', 'Cluster')
            for port in spec.get('ports') or []:
                if not isinstance(port, dict):
                    continue
                port.setdefault('protocol', 'TCP')
                if 'port' in port:
                    port.setdefault('targetPort', port['port'])
                if spec['type'] in ('NodePort', 'LoadBalancer') and 'nodePort' not in port:
                    port['nodePort'] = self._next_node_port
                    self._next_node_port += 1

    # -- HTTP entry point --------------------------------------------------------------------------

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw.read()
        if self._changed is None:
            self._changed = asyncio.Event()
        if raw.headers.get(INTERNAL_HEADER) != self.internal_token:
            self._record(raw, body)
        path = parse_api_path(raw.path)
        if path is None:  # discovery & other non-resource URLs: served by kmock
            response = await super().__call__(raw)
        else:
            try:
                response = await self._dispatch(raw, path, body)
            except ApiError as e:
                response = aiohttp.web.json_response(e.body(), status=e.code)
            except (asyncio.CancelledError, ConnectionError):
                raise
            except Exception as e:  # a bug in the fake: make it loud
                traceback.print_exc(file=sys.stderr)
                response = aiohttp.web.json_response(
                    ApiError(500, 'InternalError', f'kmock_server bug: {e!r}').body(), status=500)
        if self.verbose:
            print(f'kmock: {raw.method} {raw.path_qs} -> {response.status}', file=sys.stderr)
        return response

    def _record(self, raw: aiohttp.web.BaseRequest, body: bytes) -> None:
        if self._requests_fh is None:
            return
        content_type = raw.headers.get('Content-Type')
        parsed = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                if yaml is not None and 'yaml' in (content_type or ''):
                    try:
                        parsed = yaml.safe_load(body)
                    except yaml.YAMLError:
                        parsed = None
        record = {'method': raw.method, 'path': raw.path, 'query': dict(raw.query),
                  'contentType': content_type, 'body': parsed}
        self._requests_fh.write(json.dumps(record) + '\n')
        self._requests_fh.flush()

    async def _dispatch(self, raw: aiohttp.web.BaseRequest, p: ApiPath, body: bytes) -> aiohttp.web.StreamResponse:
        rt = TYPES.get((p.group, p.version, p.plural))
        if rt is None or (rt.namespaced and p.namespace is None and p.name is not None):
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource',
                           {'group': p.group, 'kind': p.plural} if p.group else {'kind': p.plural})
        if p.subresource is not None and p.subresource not in rt.subresources:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        query = raw.query
        method = raw.method.upper()
        ns = p.namespace
        if method == 'GET':
            if truthy(query.get('watch')):
                if p.subresource is not None:
                    raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
                return await self._watch(raw, rt, ns, query, name=p.name)
            if p.name is None:
                return self._json(self._list(rt, ns, query))
            obj = self.get_object(rt, ns, p.name)
            if obj is None:
                raise not_found(rt, p.name)
            if p.subresource == 'log':
                return await self._pod_log(raw, obj, query)
            if p.subresource == 'scale':
                return self._json(self._scale_view(obj))
            if p.subresource == 'binding':
                raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
            return self._json(obj)
        if method == 'POST':
            if p.name is None:
                data = self._decode(body, raw)
                return self._json(*self._create(rt, ns, data, query, raw))
            if p.subresource == 'binding':
                return self._json(*self._bind(ns, p.name, self._decode(body, raw)))
        if method == 'PATCH' and p.name is not None and p.subresource in (None, 'status', 'scale'):
            return self._json(*self._patch(rt, ns, p.name, p.subresource, body, query, raw))
        if method == 'PUT' and p.name is not None and p.subresource in (None, 'status', 'scale'):
            return self._json(*self._replace(rt, ns, p.name, p.subresource, self._decode(body, raw), query, raw))
        if method == 'DELETE' and p.subresource is None:
            options = self._delete_options(body, query)
            if p.name is None:
                return self._json(self._delete_collection(rt, ns, query, options))
            return self._json(*self._delete(rt, ns, p.name, options))
        raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')

    @staticmethod
    def _json(body: Any, status: int = 200) -> aiohttp.web.Response:
        return aiohttp.web.json_response(body, status=status)

    @staticmethod
    def _decode(body: bytes, raw: aiohttp.web.BaseRequest, yaml_ok: bool = False) -> Any:
        if not body:
            raise bad_request('the body of the request was empty')
        try:
            return json.loads(body)
        except ValueError as e:
            if yaml_ok and yaml is not None:
                try:
                    return yaml.safe_load(body)
                except yaml.YAMLError:
                    pass
            raise bad_request(f'error decoding the request body: {e}')

    @staticmethod
    def _manager(query: Any, raw: aiohttp.web.BaseRequest) -> str:
        if query.get('fieldManager'):
            return query['fieldManager']
        agent = raw.headers.get('User-Agent', 'unknown')
        return agent.split('/', 1)[0] or 'unknown'

    @staticmethod
    def _dry_run(query: Any) -> bool:
        value = query.get('dryRun')
        if value not in (None, '', 'All'):
            raise bad_request(f'Invalid dry run value: "{value}"; only "All" is supported')
        return value == 'All'

    def _check_body_identity(self, rt: ResType, ns: str | None, name: str | None, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                              f'json: cannot unmarshal {_JSON_TYPES.get(type(obj), "value")} into Go '
                              f'value of type struct')
        if obj.get('apiVersion') not in (None, rt.api_version):
            raise bad_request(f'the API version in the data ({obj["apiVersion"]}) does not match the '
                              f'expected API version ({rt.api_version})')
        if obj.get('kind') not in (None, rt.kind):
            raise bad_request(f'the kind in the data ({obj["kind"]}) does not match the expected kind ({rt.kind})')
        md = obj.get('metadata')
        if md is not None and not isinstance(md, dict):
            typecheck(rt, obj)
        md = md or {}
        if rt.namespaced and ns is not None and md.get('namespace') not in (None, '', ns):
            raise bad_request('the namespace of the provided object does not match the namespace '
                              'sent on the request')
        if name is not None and md.get('name') not in (None, '', name):
            raise bad_request(f'the name of the object ({md["name"]}) does not match the name on '
                              f'the URL ({name})')

    # -- list & watch ------------------------------------------------------------------------------

    def _list(self, rt: ResType, ns: str | None, query: Any) -> dict:
        lsel = parse_label_selector(query.get('labelSelector', ''))
        fsel = parse_field_selector(query.get('fieldSelector', ''), rt)
        items = [o for o in self.list_objects(rt, ns)
                 if labels_match(lsel, meta(o).get('labels')) and fields_match(fsel, o)]
        rv = str(self._rv)
        token = query.get('continue')
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                rv, start = state['rv'], tuple(state['start'])
            except (ValueError, KeyError, TypeError):
                raise bad_request('continue key is not valid')
            items = [o for o in items if (meta(o).get('namespace') or '', meta(o)['name']) > start]
        list_meta: dict[str, Any] = {'resourceVersion': rv}
        limit = query.get('limit')
        if limit:
            try:
                limit_n = int(limit)
            except ValueError:
                raise bad_request(f'invalid limit: {limit}')
            if 0 < limit_n < len(items):
                remaining = len(items) - limit_n
                items = items[:limit_n]
                last = meta(items[-1])
                list_meta['continue'] = base64.urlsafe_b64encode(json.dumps(
                    {'rv': rv, 'start': [last.get('namespace') or '', last['name']]}).encode()).decode()
                if not lsel and not fsel:
                    list_meta['remainingItemCount'] = remaining
        return {'kind': f'{rt.kind}List', 'apiVersion': rt.api_version, 'metadata': list_meta,
                'items': [{k: v for k, v in o.items() if k not in ('apiVersion', 'kind')} for o in items]}

    async def _watch(self, raw: aiohttp.web.BaseRequest, rt: ResType, ns: str | None, query: Any,
                     name: str | None = None) -> aiohttp.web.StreamResponse:
        lsel = parse_label_selector(query.get('labelSelector', ''))
        fsel = parse_field_selector(query.get('fieldSelector', ''), rt)
        if name is not None:
            fsel.append(('metadata.name', '=', name))
        rv = query.get('resourceVersion', '')
        send_initial = truthy(query.get('sendInitialEvents'))
        bookmarks = truthy(query.get('allowWatchBookmarks'))
        if send_initial and query.get('resourceVersionMatch') != 'NotOlderThan':
            raise invalid('ListOptions', 'meta.k8s.io', '', [(
                'resourceVersionMatch', 'FieldValueForbidden',
                'Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan')])
        timeout = None
        if query.get('timeoutSeconds'):
            try:
                timeout = float(int(query['timeoutSeconds']))
            except ValueError:
                raise bad_request(f'invalid timeoutSeconds: {query["timeoutSeconds"]}')
        if rv not in ('', '0'):
            try:
                int(rv)
            except ValueError:
                raise bad_request(f'invalid resource version: {rv}')

        def matches(obj: dict | None) -> bool:
            return (obj is not None and (ns is None or meta(obj).get('namespace') == ns)
                    and labels_match(lsel, meta(obj).get('labels')) and fields_match(fsel, obj))

        response = aiohttp.web.StreamResponse(status=200, headers={'Content-Type': 'application/json'})
        await response.prepare(raw)
        loop = asyncio.get_running_loop()

        async def send(type_: str, obj: dict) -> None:
            await response.write(json.dumps({'type': type_, 'object': obj}).encode() + b'\n')

        def bookmark(rv_: int, initial_end: bool = False) -> dict:
            md: dict[str, Any] = {'resourceVersion': str(rv_)}
            if initial_end:
                md['annotations'] = {'k8s.io/initial-events-end': 'true'}
            return {'kind': rt.kind, 'apiVersion': rt.api_version, 'metadata': md}

        async def expired(cursor_: int) -> aiohttp.web.StreamResponse:
            await send('ERROR', {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                                 'message': f'too old resource version: {cursor_} ({self._log_floor + 1})',
                                 'reason': 'Expired', 'code': 410})
            await response.write_eof()
            return response

        try:
            if rv in ('', '0') or send_initial:
                cursor = self._rv
                initial = [o for o in self.list_objects(rt, ns) if matches(o)]
                for obj in initial:
                    await send('ADDED', obj)
                if send_initial and bookmarks:
                    await send('BOOKMARK', bookmark(cursor, initial_end=True))
            else:
                cursor = int(rv)
                if cursor < self._log_floor:
                    return await expired(cursor)
            deadline = loop.time() + timeout if timeout else None
            last_sent = loop.time()
            while not self.stopping:
                waiter = self._changed
                if cursor < self._log_floor:
                    return await expired(cursor)
                start = bisect.bisect_right(self._event_rvs, cursor)
                for entry in self._event_log[start:]:
                    cursor = entry.rv
                    if entry.rtkey != rt.key:
                        continue
                    now_m, prev_m = matches(entry.obj), matches(entry.prev)
                    if entry.type == 'ADDED':
                        kind = 'ADDED' if now_m else None
                    elif entry.type == 'DELETED':
                        kind = 'DELETED' if now_m else None
                    else:
                        kind = ('MODIFIED' if now_m and prev_m else 'ADDED' if now_m
                                else 'DELETED' if prev_m else None)
                    if kind:
                        await send(kind, entry.obj)
                        last_sent = loop.time()
                now = loop.time()
                if bookmarks and now - last_sent >= BOOKMARK_INTERVAL:
                    cursor = max(cursor, self._rv) if waiter is self._changed else cursor
                    await send('BOOKMARK', bookmark(cursor))
                    last_sent = now
                if deadline is not None and now >= deadline:
                    break
                wait = BOOKMARK_INTERVAL if deadline is None else min(BOOKMARK_INTERVAL, deadline - now)
                try:
                    await asyncio.wait_for(waiter.wait(), timeout=max(wait, 0.01))
                except asyncio.TimeoutError:
                    pass
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        return response

    # -- create / patch / replace ------------------------------------------------------------------

    def _create(self, rt: ResType, ns: str | None, data: Any, query: Any,
                raw: aiohttp.web.BaseRequest) -> tuple[dict, int]:
        dry_run = self._dry_run(query)
        self._check_body_identity(rt, ns, None, data)
        md = data.get('metadata') or {}
        name = md.get('name')
        if not name and md.get('generateName'):
            name = md['generateName'] + random_suffix()
        if not name:
            raise invalid_obj(rt, '', [('metadata.name', 'FieldValueRequired',
                                        'Required value: name or generateName is required')])
        if rt.namespaced and not ns:
            ns = md.get('namespace') or 'default'
        if self.get_object(rt, ns, name) is not None:
            raise already_exists(rt, name)
        new = self._prepare(rt, ns, name, None, data, manager=self._manager(query, raw),
                            operation='Update', sub=None)
        return self._commit(rt, ns, name, None, new, dry_run), 201

    def _patch(self, rt: ResType, ns: str | None, name: str, sub: str | None, body: bytes,
               query: Any, raw: aiohttp.web.BaseRequest) -> tuple[dict, int]:
        ctype = (raw.headers.get('Content-Type') or '').split(';')[0].strip().lower()
        kinds = {'application/json-patch+json': 'json', 'application/merge-patch+json': 'merge',
                 'application/strategic-merge-patch+json': 'strategic',
                 'application/apply-patch+yaml': 'apply', 'application/apply-patch+cbor': None}
        kind = kinds.get(ctype)
        if kind is None:
            raise ApiError(415, 'UnsupportedMediaType',
                           f'the body of the request was in an unknown format - accepted media types '
                           f'include: application/json-patch+json, application/merge-patch+json, '
                           f'application/apply-patch+yaml, application/strategic-merge-patch+json')
        causes = []
        if kind == 'apply' and not query.get('fieldManager'):
            causes.append(('fieldManager', 'FieldValueRequired', 'Required value: is required for apply patch'))
        if kind != 'apply' and 'force' in query:
            causes.append(('force', 'FieldValueForbidden', 'Forbidden: may not be specified for non-apply patch'))
        if query.get('force', 'false') not in ('true', 'false', '1', '0', 'True', 'False'):
            raise bad_request(f'invalid value for force: {query["force"]}')
        if causes:
            raise invalid('PatchOptions', 'meta.k8s.io', '', causes)
        dry_run = self._dry_run(query)
        manager = self._manager(query, raw)
        patch = self._decode(body, raw, yaml_ok=(kind == 'apply'))
        if kind == 'json' and not isinstance(patch, list):
            raise bad_request('json: cannot unmarshal object into Go value of type jsonpatch.Patch')
        if kind != 'json' and not isinstance(patch, dict):
            raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                              'json: cannot unmarshal array into Go value of type map[string]interface {}')
        current = self.get_object(rt, ns, name)

        if kind == 'apply':
            if sub == 'scale':
                if current is None:
                    raise not_found(rt, name)
                if patch.get('apiVersion') not in (None, 'autoscaling/v1') or patch.get('kind') not in (None, 'Scale'):
                    raise bad_request('the body of a scale apply must be an autoscaling/v1 Scale')
                config = {'spec': {'replicas': (patch.get('spec') or {}).get('replicas')}}
                config = strip_nulls(config)
                new, code = self._apply(rt, ns, name, current, config, manager, truthy(query.get('force')),
                                        'scale', dry_run, check_identity=False)
                return self._scale_view(new), code
            return self._apply(rt, ns, name, current, patch, manager, truthy(query.get('force')), sub, dry_run)

        if current is None:
            raise not_found(rt, name)
        base = self._scale_view(current) if sub == 'scale' else copy.deepcopy(current)
        try:
            if kind == 'merge':
                patched = json_merge_patch(base, patch)
            elif kind == 'strategic':
                patched = strategic_merge(base, patch)
            else:
                patched = jsonpatch.apply_patch(base, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            raise ApiError(422, 'Invalid', f'the server rejected our request due to an error in our request: {e}')
        self._check_precondition(rt, name, current, patched)
        if sub == 'scale':
            return self._write_scale(rt, ns, name, current, patched, manager, 'Update', dry_run)
        self._check_body_identity(rt, ns, name, patched)
        new = self._prepare(rt, ns, name, current, patched, manager=manager, operation='Update', sub=sub)
        return self._commit(rt, ns, name, current, new, dry_run), 200

    @staticmethod
    def _check_precondition(rt: ResType, name: str, current: dict, desired: Any) -> None:
        if isinstance(desired, dict):
            want = (desired.get('metadata') or {}).get('resourceVersion')
            if want not in (None, '') and want != meta(current).get('resourceVersion'):
                raise modified_conflict(rt, name)

    def _apply(self, rt: ResType, ns: str | None, name: str, current: dict | None, config: dict,
               manager: str, force: bool, sub: str | None, dry_run: bool,
               check_identity: bool = True) -> tuple[dict, int]:
        """Server-side apply (a simplified structured-merge-diff)."""
        if check_identity:
            self._check_body_identity(rt, ns, name, config)
            if not config.get('apiVersion') or not config.get('kind'):
                raise bad_request(f'Object \'{"Kind" if not config.get("kind") else "apiVersion"}\' '
                                  f'is missing in \'{json.dumps(config)}\'')
        config = strip_nulls(copy.deepcopy(config))
        if rt.has_status:
            if sub == 'status':
                config = {'status': config.get('status')} if config.get('status') is not None else {}
            else:
                config.pop('status', None)
        applied = {p for p in field_paths(config) if self._ownable(rt, sub, p)}
        me = (manager, 'Apply', sub)
        if current is None:
            if sub is not None:
                raise not_found(rt, name)
            new = self._prepare(rt, ns, name, None, config, manager=manager, operation='Apply',
                                sub=None, applied=applied, managed={})
            return self._commit(rt, ns, name, None, new, dry_run), 201
        self._check_precondition(rt, name, current, config)

        managed = copy.deepcopy(self._managed.get(self._okey(rt, ns, name), {}))
        conflicts = []
        for path in sorted(applied, key=repr):
            if is_item_path(path):
                continue
            want, have = get_path(config, path), get_path(current, path)
            if have is MISSING or isinstance(want, dict) or want == have:
                continue
            for other, entry in managed.items():
                if other != me and path in entry['paths']:
                    conflicts.append((other, path))
        if conflicts and not force:
            causes = [{'reason': 'FieldManagerConflict',
                       'message': f'conflict with "{m}"' + (' using ' + rt.api_version if op == 'Update' else '')
                                  + (f' with subresource "{s}"' if s else ''),
                       'field': path_text(path)} for (m, op, s), path in conflicts]
            lines = '\n'.join(f'- {c["message"]}: {c["field"]}' for c in causes)
            err = conflict(rt, name, '', causes)
            err.message = (f'Apply failed with {len(causes)} conflict{"s" if len(causes) > 1 else ""}: '
                           + (f'{causes[0]["message"]}: {causes[0]["field"]}' if len(causes) == 1 else '\n' + lines))
            raise err
        for other, path in conflicts:
            managed[other]['paths'].discard(path)

        # Fields this manager applied before but not now are removed, unless someone else owns them.
        work = copy.deepcopy(current)
        previously = managed.get(me, {}).get('paths', set())
        removed: list[tuple] = []
        for path in sorted(previously - applied, key=len):  # parents (list items) first
            if any(path[:len(q)] == q for q in removed):
                continue  # already gone with its list item
            if len(path) >= 2 and isinstance(path[-2], tuple) and path[-1] in dict(path[-2][1]):
                continue  # a key field of a list item goes only with the item itself
            if any(q[:len(path)] == path for m, e in managed.items() if m != me for q in e['paths']):
                continue  # owned elsewhere too
            delete_path(work, path)
            removed.append(path)
        merged = ssa_merge(work, config)
        new = self._prepare(rt, ns, name, current, merged, manager=manager, operation='Apply', sub=sub,
                            applied=applied, managed=managed)
        return self._commit(rt, ns, name, current, new, dry_run), 200

    def _replace(self, rt: ResType, ns: str | None, name: str, sub: str | None, data: Any, query: Any,
                 raw: aiohttp.web.BaseRequest) -> tuple[dict, int]:
        dry_run = self._dry_run(query)
        manager = self._manager(query, raw)
        current = self.get_object(rt, ns, name)
        if current is None:
            raise not_found(rt, name)
        if sub == 'scale':
            if not isinstance(data, dict):
                raise bad_request('invalid Scale body')
            self._check_precondition(rt, name, current, data)
            return self._write_scale(rt, ns, name, current, data, manager, 'Update', dry_run)
        self._check_body_identity(rt, ns, name, data)
        self._check_precondition(rt, name, current, data)
        new = self._prepare(rt, ns, name, current, data, manager=manager, operation='Update', sub=sub)
        return self._commit(rt, ns, name, current, new, dry_run), 200

    # -- scale & binding subresources ----------------------------------------------------------------

    @staticmethod
    def _scale_view(obj: dict) -> dict:
        md = meta(obj)
        spec, status = obj.get('spec') or {}, obj.get('status') or {}
        return {'kind': 'Scale', 'apiVersion': 'autoscaling/v1',
                'metadata': {k: md[k] for k in ('name', 'namespace', 'uid', 'resourceVersion',
                                                'creationTimestamp') if k in md},
                'spec': {'replicas': spec.get('replicas', 0)},
                'status': {'replicas': status.get('replicas', 0),
                           'selector': selector_string(spec.get('selector') or {})}}

    def _write_scale(self, rt: ResType, ns: str | None, name: str, current: dict, scale: dict,
                     manager: str, operation: str, dry_run: bool) -> tuple[dict, int]:
        replicas = (scale.get('spec') or {}).get('replicas', 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise bad_request('Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal '
                              'into Go struct field ScaleSpec.spec.replicas of type int32')
        if replicas < 0:
            raise invalid('Scale', 'autoscaling', name, [bad_value('spec.replicas', replicas,
                                                                   'must be greater than or equal to 0')])
        desired = copy.deepcopy(current)
        desired.setdefault('spec', {})['replicas'] = replicas
        new = self._prepare(rt, ns, name, current, desired, manager=manager, operation=operation, sub='scale')
        return self._scale_view(self._commit(rt, ns, name, current, new, dry_run)), 200

    def _bind(self, ns: str | None, name: str, binding: Any) -> tuple[dict, int]:
        pod = self.get_object(PODS, ns, name)
        if pod is None:
            raise not_found(PODS, name)
        node = ((binding or {}).get('target') or {}).get('name')
        if not node:
            raise invalid('Binding', '', name, [required('target.name')])
        if (pod.get('spec') or {}).get('nodeName'):
            raise conflict(PODS, name, f'pod {name} is already assigned to node '
                                       f'"{pod["spec"]["nodeName"]}"')
        new = copy.deepcopy(pod)
        new['spec']['nodeName'] = node
        status = new.setdefault('status', {})
        conditions = [c for c in status.get('conditions') or [] if c.get('type') != 'PodScheduled']
        status['conditions'] = conditions + [{'type': 'PodScheduled', 'status': 'True',
                                              'lastProbeTime': None, 'lastTransitionTime': now_rfc3339()}]
        new['metadata']['resourceVersion'] = meta(pod)['resourceVersion']
        self._store(PODS, ns, name, pod, new)
        return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success', 'code': 201}, 201

    # -- delete --------------------------------------------------------------------------------------

    @staticmethod
    def _delete_options(body: bytes, query: Any) -> dict:
        options: dict[str, Any] = {}
        for key in ('propagationPolicy', 'gracePeriodSeconds', 'dryRun', 'orphanDependents'):
            if key in query:
                options[key] = query[key]
        if body:
            try:
                data = json.loads(body)
            except ValueError as e:
                raise bad_request(f'error decoding DeleteOptions: {e}')
            if isinstance(data, dict):
                options.update({k: v for k, v in data.items() if v is not None})
        if 'gracePeriodSeconds' in options:
            try:
                options['gracePeriodSeconds'] = int(options['gracePeriodSeconds'])
            except (TypeError, ValueError):
                raise bad_request(f'invalid gracePeriodSeconds: {options["gracePeriodSeconds"]}')
        dry = options.get('dryRun')
        if isinstance(dry, str):
            dry = [dry]
        if dry and dry != ['All']:
            raise bad_request(f'Invalid dry run value: {dry}')
        options['dryRun'] = bool(dry)
        policy = options.get('propagationPolicy')
        if policy is None and 'orphanDependents' in options:
            policy = 'Orphan' if str(options['orphanDependents']).lower() == 'true' else 'Background'
        if policy not in (None, 'Orphan', 'Background', 'Foreground'):
            raise invalid('DeleteOptions', 'meta.k8s.io', '', [(
                'propagationPolicy', 'FieldValueNotSupported',
                f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan"')])
        options['propagationPolicy'] = policy
        return options

    def _delete(self, rt: ResType, ns: str | None, name: str, options: dict) -> tuple[dict, int]:
        current = self.get_object(rt, ns, name)
        if current is None:
            raise not_found(rt, name)
        md = meta(current)
        pre = options.get('preconditions') or {}
        if pre.get('uid') not in (None, md.get('uid')):
            raise conflict(rt, name, f'Precondition failed: UID in precondition: {pre["uid"]}, '
                                     f'UID in object meta: {md.get("uid")}')
        if pre.get('resourceVersion') not in (None, md.get('resourceVersion')):
            raise conflict(rt, name, f'Precondition failed: ResourceVersion in precondition: '
                                     f'{pre["resourceVersion"]}, ResourceVersion in object meta: '
                                     f'{md.get("resourceVersion")}')
        grace = options.get('gracePeriodSeconds')
        policy = options.get('propagationPolicy')
        if options['dryRun']:
            return current, 200
        if md.get('deletionTimestamp'):
            # Already being deleted; a pod's grace period can still be shortened to 0.
            if rt is PODS and grace == 0 and md.get('deletionGracePeriodSeconds') != 0:
                if not md.get('finalizers'):
                    return self._remove(rt, ns, name, current), 200
                new = copy.deepcopy(current)
                new['metadata']['deletionGracePeriodSeconds'] = 0
                return self._commit(rt, ns, name, current, new), 200
            return current, 200
        finalizers = list(md.get('finalizers') or [])
        if policy == 'Foreground' and 'foregroundDeletion' not in finalizers:
            finalizers.append('foregroundDeletion')
        elif policy == 'Orphan' and 'orphan' not in finalizers:
            finalizers.append('orphan')
        spec = current.get('spec') or {}
        if grace is None and rt is PODS:
            grace = spec.get('terminationGracePeriodSeconds', 30)
        graceful = (rt is PODS and bool(grace) and bool(spec.get('nodeName'))
                    and (current.get('status') or {}).get('phase') not in ('Succeeded', 'Failed'))
        if not finalizers and not graceful:
            final = self._remove(rt, ns, name, current)
            return (final if rt.return_deleted_object else status_success(rt, name, md.get('uid'))), 200
        new = copy.deepcopy(current)
        nmd = new['metadata']
        nmd['deletionTimestamp'] = now_rfc3339(grace if graceful else 0)
        nmd['deletionGracePeriodSeconds'] = int(grace) if graceful else 0
        if finalizers:
            nmd['finalizers'] = finalizers
        if 'generation' in nmd:
            nmd['generation'] = int(nmd['generation']) + 1
        return self._commit(rt, ns, name, current, new), 200

    def _delete_collection(self, rt: ResType, ns: str | None, query: Any, options: dict) -> dict:
        lsel = parse_label_selector(query.get('labelSelector', ''))
        fsel = parse_field_selector(query.get('fieldSelector', ''), rt)
        items = []
        for obj in self.list_objects(rt, ns):
            if labels_match(lsel, meta(obj).get('labels')) and fields_match(fsel, obj):
                result, _ = self._delete(rt, meta(obj).get('namespace'), meta(obj)['name'], options)
                items.append(obj if result.get('kind') == 'Status' else result)
        return {'kind': f'{rt.kind}List', 'apiVersion': rt.api_version,
                'metadata': {'resourceVersion': str(self._rv)}, 'items': items}

    # -- pod logs ------------------------------------------------------------------------------------

    async def _pod_log(self, raw: aiohttp.web.BaseRequest, pod: dict, query: Any) -> aiohttp.web.StreamResponse:
        name, spec = meta(pod)['name'], pod.get('spec') or {}
        containers = [c.get('name') for c in spec.get('containers') or []]
        all_names = containers + [c.get('name') for c in (spec.get('initContainers') or [])
                                  + (spec.get('ephemeralContainers') or [])]
        container = query.get('container')
        if not container:
            if len(containers) != 1:
                raise bad_request(f'a container name must be specified for pod {name}, choose one of: '
                                  f'[{" ".join(containers)}]')
            container = containers[0]
        elif container not in all_names:
            raise bad_request(f'container {container} is not valid for pod {name}')

        def ints(key: str) -> int | None:
            if query.get(key) in (None, ''):
                return None
            try:
                return int(query[key])
            except ValueError:
                raise bad_request(f'invalid {key}: {query[key]}')
        tail, limit_bytes, since_seconds = ints('tailLines'), ints('limitBytes'), ints('sinceSeconds')
        if tail is not None and tail < 0:
            raise invalid('PodLogOptions', '', name, [bad_value('tailLines', tail, 'must be greater than or equal to 0')])
        previous = truthy(query.get('previous'))
        if not spec.get('nodeName'):
            raise bad_request(f'pod {name} does not have a host assigned')
        status = next((s for s in (pod.get('status') or {}).get('containerStatuses') or []
                       if s.get('name') == container), {})
        state, last = status.get('state') or {}, status.get('lastState') or {}
        where = f'container "{container}" in pod "{name}"'
        if previous:
            if not last.get('terminated'):
                raise bad_request(f'previous terminated {where} not found')
        elif not (state.get('running') or state.get('terminated') or last.get('terminated')):
            reason = (state.get('waiting') or {}).get('reason')
            if reason == 'ErrImagePull':
                raise bad_request(f'{where} is waiting to start: image can\'t be pulled')
            if reason == 'ImagePullBackOff':
                raise bad_request(f'{where} is waiting to start: trying and failing to pull image')
            if reason:
                raise bad_request(f'{where} is waiting to start: {reason}')
            raise bad_request(f'{where} is waiting to start: ContainerCreating')

        started = (parse_rfc3339((state.get('running') or state.get('terminated') or {}).get('startedAt', ''))
                   or parse_rfc3339(meta(pod).get('creationTimestamp', ''))
                   or datetime.datetime.now(datetime.timezone.utc))
        lines = [f'line {i} of {name}' for i in range(1, LOG_LINES + 1)]
        stamped = [(started + datetime.timedelta(milliseconds=n), line) for n, line in enumerate(lines, 1)]
        since = parse_rfc3339(query.get('sinceTime', '')) if query.get('sinceTime') else None
        if since_seconds is not None:
            since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=since_seconds)
        if since is not None:
            stamped = [(t, line) for t, line in stamped if t >= since]
        if tail is not None:
            stamped = stamped[len(stamped) - tail:] if tail else []
        if previous:  # the marker survives tailLines/since*, so tests can tell the two logs apart
            stamped.insert(0, (started, f'previous container of {name}'))
        if truthy(query.get('timestamps')):
            text = ''.join(f'{t.strftime("%Y-%m-%dT%H:%M:%S.%f")}000Z {line}\n' for t, line in stamped)
        else:
            text = ''.join(f'{line}\n' for _, line in stamped)
        data = text.encode()
        if limit_bytes is not None:
            data = data[:limit_bytes]
        if not truthy(query.get('follow')) or previous:
            return aiohttp.web.Response(body=data, content_type='text/plain', charset='utf-8')

        response = aiohttp.web.StreamResponse(status=200, headers={'Content-Type': 'text/plain; charset=utf-8'})
        await response.prepare(raw)
        try:
            await response.write(data)
            uid = meta(pod).get('uid')
            while not self.stopping:  # follow until the container stops or the pod goes away
                await asyncio.sleep(CONTROLLER_INTERVAL)
                cur = self.get_object(PODS, meta(pod).get('namespace'), name)
                if cur is None or meta(cur).get('uid') != uid or is_deleting(cur):
                    break
                cs = next((s for s in (cur.get('status') or {}).get('containerStatuses') or []
                           if s.get('name') == container), {})
                if not (cs.get('state') or {}).get('running'):
                    break
            await response.write_eof()
        except ConnectionError:
            pass
        return response


# ---------------------------------------------------------------------------------------------
# Fake controllers: deployment controller, garbage collector, scheduler, kubelet.
# They read the server's memory and write through its HTTP API (so watch events flow).
# ---------------------------------------------------------------------------------------------

class FakeControllers:
    def __init__(self, api: FakeKubernetes, base_url: str):
        self.api = api
        self.base_url = base_url
        self.session: aiohttp.ClientSession | None = None
        self.started_pods: set[str] = set()      # pod uids whose status the kubelet has set
        self.killing_pods: set[str] = set()
        self.progress: dict[str, tuple[Any, float]] = {}  # deployment uid -> (signature, since)

    async def run(self) -> None:
        self.session = aiohttp.ClientSession(headers={INTERNAL_HEADER: self.api.internal_token,
                                                      'User-Agent': 'kmock-controllers/1.0'})
        try:
            while True:
                try:
                    await self.reconcile()
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception:
                    traceback.print_exc(file=sys.stderr)
                await asyncio.sleep(CONTROLLER_INTERVAL)
        finally:
            await self.session.close()

    async def call(self, method: str, path: str, body: Any = None, *, params: dict | None = None,
                   content_type: str = 'application/json') -> tuple[int, Any]:
        assert self.session is not None
        data = None if body is None else json.dumps(body)
        async with self.session.request(method, self.base_url + path, data=data, params=params,
                                        headers={'Content-Type': content_type}) as resp:
            text = await resp.text()
            if resp.status >= 400 and resp.status not in (404, 409) and self.api.verbose:
                print(f'kmock controllers: {method} {path} -> {resp.status} {text}', file=sys.stderr)
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    @staticmethod
    def path(rt: ResType, ns: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = f'/apis/{rt.group}/{rt.version}' if rt.group else f'/api/{rt.version}'
        if ns:
            base += f'/namespaces/{ns}'
        base += f'/{rt.plural}'
        if name:
            base += f'/{name}'
        if sub:
            base += f'/{sub}'
        return base

    async def merge_patch(self, rt: ResType, obj: dict, patch: dict, manager: str, sub: str | None = None) -> int:
        md = meta(obj)
        patch = json_merge_patch(patch, {'metadata': {'resourceVersion': md['resourceVersion']}})
        status, _ = await self.call('PATCH', self.path(rt, md.get('namespace'), md['name'], sub), patch,
                                    params={'fieldManager': manager},
                                    content_type='application/merge-patch+json')
        return status

    async def delete(self, rt: ResType, obj: dict, **options: Any) -> int:
        md = meta(obj)
        body = dict(options, preconditions={'uid': md['uid']})
        status, _ = await self.call('DELETE', self.path(rt, md.get('namespace'), md['name']), body)
        return status

    async def event(self, obj: dict, rt: ResType, type_: str, reason: str, message: str,
                    component: str = 'kubelet', field_path: str | None = None) -> None:
        md = meta(obj)
        now = now_rfc3339()
        involved = {'kind': rt.kind, 'namespace': md.get('namespace'), 'name': md['name'],
                    'uid': md.get('uid'), 'apiVersion': rt.api_version,
                    'resourceVersion': md.get('resourceVersion')}
        if field_path:
            involved['fieldPath'] = field_path
        event = {'apiVersion': 'v1', 'kind': 'Event',
                 'metadata': {'name': f'{md["name"]}.{uuid.uuid4().hex[:16]}',
                              'namespace': md.get('namespace') or 'default'},
                 'involvedObject': involved, 'reason': reason, 'message': message,
                 'source': {'component': component, **({'host': NODE_NAME} if component == 'kubelet' else {})},
                 'firstTimestamp': now, 'lastTimestamp': now, 'count': 1, 'type': type_,
                 'eventTime': None, 'reportingComponent': component,
                 'reportingInstance': NODE_NAME if component == 'kubelet' else ''}
        await self.call('POST', self.path(EVENTS, event['metadata']['namespace']), event,
                        params={'fieldManager': component})

    async def reconcile(self) -> None:
        await self.garbage_collect()
        for deployment in self.api.list_objects(DEPLOYMENTS):
            await self.sync_deployment(deployment)
        await self.schedule_and_run_pods()
        for deployment in self.api.list_objects(DEPLOYMENTS):
            await self.sync_deployment_status(deployment)

    # -- garbage collector ---------------------------------------------------------------------------

    async def garbage_collect(self) -> None:
        objects = self.api.all_objects()
        uids = {meta(o).get('uid') for _, o in objects}
        for rt, obj in objects:
            md = meta(obj)
            finalizers = md.get('finalizers') or []
            if md.get('deletionTimestamp') and ('foregroundDeletion' in finalizers or 'orphan' in finalizers):
                dependents = [(drt, d) for drt, d in self.api.all_objects()
                              if any(r.get('uid') == md.get('uid') for r in meta(d).get('ownerReferences') or [])]
                if 'orphan' in finalizers:
                    for drt, dep in dependents:
                        refs = [r for r in meta(dep).get('ownerReferences') or [] if r.get('uid') != md.get('uid')]
                        await self.merge_patch(drt, dep, {'metadata': {'ownerReferences': refs or None}},
                                               'generic-garbage-collector')
                    await self.merge_patch(rt, obj, {'metadata': {'finalizers': [
                        f for f in finalizers if f != 'orphan'] or None}}, 'generic-garbage-collector')
                    continue
                for drt, dep in dependents:
                    if not is_deleting(dep):
                        await self.delete(drt, dep, propagationPolicy='Background')
                blocking = [d for _, d in dependents
                            if any(r.get('uid') == md.get('uid') and r.get('blockOwnerDeletion')
                                   for r in meta(d).get('ownerReferences') or [])]
                if not blocking:
                    await self.merge_patch(rt, obj, {'metadata': {'finalizers': [
                        f for f in finalizers if f != 'foregroundDeletion'] or None}}, 'generic-garbage-collector')
                continue
            refs = md.get('ownerReferences') or []
            if refs and not is_deleting(obj):
                alive = [r for r in refs if r.get('uid') in uids]
                if not alive:
                    await self.delete(rt, obj, propagationPolicy='Background')
                elif len(alive) != len(refs):
                    await self.merge_patch(rt, obj, {'metadata': {'ownerReferences': alive}},
                                           'generic-garbage-collector')

    # -- deployment controller -----------------------------------------------------------------------

    def owned_pods(self, deployment: dict) -> list[dict]:
        md = meta(deployment)
        return [p for p in self.api.list_objects(PODS, md.get('namespace'))
                if any(r.get('uid') == md.get('uid') and r.get('controller')
                       for r in meta(p).get('ownerReferences') or [])]

    @staticmethod
    def is_active(pod: dict) -> bool:
        return not is_deleting(pod) and (pod.get('status') or {}).get('phase') not in ('Succeeded', 'Failed')

    @staticmethod
    def removal_order(pods: list[dict]) -> list[dict]:
        """Which pods to delete first when scaling down: unscheduled, not ready, newest."""
        return sorted(pods, key=lambda p: (bool((p.get('spec') or {}).get('nodeName')), pod_ready(p),
                                           [-ord(c) for c in meta(p).get('creationTimestamp', '')]))

    async def sync_deployment(self, deployment: dict) -> None:
        md, spec = meta(deployment), deployment.get('spec') or {}
        if md.get('deletionTimestamp'):
            return
        desired = spec.get('replicas', 1)
        template = spec.get('template') or {}
        tpl_hash = template_hash(template)
        pods = self.owned_pods(deployment)
        active = [p for p in pods if self.is_active(p)]
        new = [p for p in active if (meta(p).get('labels') or {}).get('pod-template-hash') == tpl_hash]
        old = [p for p in active if p not in new]
        strategy = spec.get('strategy') or {}

        if strategy.get('type') == 'Recreate':
            if old:
                for pod in old:
                    await self.delete(PODS, pod)
                return
            if any((meta(p).get('labels') or {}).get('pod-template-hash') != tpl_hash for p in pods):
                return  # wait until the old pods are completely gone
            surge, unavailable = 0, desired
        else:
            ru = strategy.get('rollingUpdate') or {}
            surge = resolve_int_or_percent(ru.get('maxSurge', '25%'), desired, True)
            unavailable = resolve_int_or_percent(ru.get('maxUnavailable', '25%'), desired, False)
            if surge == 0 and unavailable == 0:
                unavailable = 1

        if len(new) < desired:
            count = desired - len(new)
            if old:
                count = min(count, desired + surge - len(active))
            for _ in range(max(count, 0)):
                await self.create_pod(deployment, tpl_hash)
        elif len(new) > desired:
            for pod in self.removal_order(new)[:len(new) - desired]:
                await self.delete(PODS, pod)

        if old:
            min_available = desired - unavailable
            ready_total = sum(1 for p in active if pod_ready(p))
            for pod in self.removal_order(old):
                if not pod_ready(pod):
                    await self.delete(PODS, pod)
                elif ready_total - 1 >= min_available:
                    await self.delete(PODS, pod)
                    ready_total -= 1

    async def create_pod(self, deployment: dict, tpl_hash: str) -> None:
        md = meta(deployment)
        template = copy.deepcopy((deployment.get('spec') or {}).get('template') or {})
        tmd = template.get('metadata') or {}
        pod_md: dict[str, Any] = {
            'generateName': f'{md["name"]}-{tpl_hash}-',
            'namespace': md.get('namespace'),
            'labels': dict(tmd.get('labels') or {}, **{'pod-template-hash': tpl_hash}),
            'ownerReferences': [{'apiVersion': DEPLOYMENTS.api_version, 'kind': DEPLOYMENTS.kind,
                                 'name': md['name'], 'uid': md['uid'], 'controller': True,
                                 'blockOwnerDeletion': True}],
        }
        if tmd.get('annotations'):
            pod_md['annotations'] = dict(tmd['annotations'])
        pod = {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': pod_md, 'spec': template.get('spec') or {}}
        await self.call('POST', self.path(PODS, md.get('namespace')), pod,
                        params={'fieldManager': 'kube-controller-manager'})

    async def sync_deployment_status(self, deployment: dict) -> None:
        md, spec = meta(deployment), deployment.get('spec') or {}
        desired = spec.get('replicas', 1)
        tpl_hash = template_hash(spec.get('template') or {})
        rs_name = f'{md["name"]}-{tpl_hash}'
        active = [p for p in self.owned_pods(deployment) if self.is_active(p)]
        updated = [p for p in active if (meta(p).get('labels') or {}).get('pod-template-hash') == tpl_hash]
        min_ready = spec.get('minReadySeconds') or 0
        now = datetime.datetime.now(datetime.timezone.utc)

        def available(pod: dict) -> bool:
            if not pod_ready(pod):
                return False
            if not min_ready:
                return True
            cond = next((c for c in pod['status']['conditions'] if c.get('type') == 'Ready'), {})
            since = parse_rfc3339(cond.get('lastTransitionTime', ''))
            return since is None or (now - since).total_seconds() >= min_ready
        ready_n = sum(1 for p in active if pod_ready(p))
        available_n = sum(1 for p in active if available(p))
        strategy = spec.get('strategy') or {}
        if strategy.get('type') == 'Recreate':
            max_unavailable = desired
        else:
            max_unavailable = resolve_int_or_percent(
                (strategy.get('rollingUpdate') or {}).get('maxUnavailable', '25%'), desired, False)
        unavailable_n = max(0, max(desired, len(active)) - available_n)

        old = deployment.get('status') or {}
        old_conditions = {c.get('type'): c for c in old.get('conditions') or []}
        stamp = now_rfc3339()

        def condition(type_: str, status: str, reason: str, message: str) -> dict:
            prev = old_conditions.get(type_) or {}
            same_status = prev.get('status') == status
            same_all = same_status and prev.get('reason') == reason and prev.get('message') == message
            return {'type': type_, 'status': status,
                    'lastUpdateTime': prev.get('lastUpdateTime', stamp) if same_all else stamp,
                    'lastTransitionTime': prev.get('lastTransitionTime', stamp) if same_status else stamp,
                    'reason': reason, 'message': message}

        conditions = []
        if available_n >= desired - max_unavailable:
            conditions.append(condition('Available', 'True', 'MinimumReplicasAvailable',
                                        'Deployment has minimum availability.'))
        else:
            conditions.append(condition('Available', 'False', 'MinimumReplicasUnavailable',
                                        'Deployment does not have minimum availability.'))
        complete = len(updated) == desired and len(active) == desired and available_n >= desired
        signature = (tpl_hash, len(updated), ready_n, available_n, len(active), desired)
        uid = md.get('uid')
        loop_now = asyncio.get_running_loop().time()
        prev_sig, since = self.progress.get(uid, (None, loop_now))
        if prev_sig != signature:
            since = loop_now
        self.progress[uid] = (signature, since)
        deadline = spec.get('progressDeadlineSeconds', 600)
        if complete:
            conditions.append(condition('Progressing', 'True', 'NewReplicaSetAvailable',
                                        f'ReplicaSet "{rs_name}" has successfully progressed.'))
        elif loop_now - since > deadline or (
                prev_sig == signature
                and (old_conditions.get('Progressing') or {}).get('reason') == 'ProgressDeadlineExceeded'):
            conditions.append(condition('Progressing', 'False', 'ProgressDeadlineExceeded',
                                        f'ReplicaSet "{rs_name}" has timed out progressing.'))
        else:
            conditions.append(condition('Progressing', 'True', 'ReplicaSetUpdated',
                                        f'ReplicaSet "{rs_name}" is progressing.'))

        status: dict[str, Any] = {'observedGeneration': md.get('generation', 1)}
        for key, value in (('replicas', len(active)), ('updatedReplicas', len(updated)),
                           ('readyReplicas', ready_n), ('availableReplicas', available_n),
                           ('unavailableReplicas', unavailable_n)):
            if value:  # int32 fields with omitempty: zero is not serialized by the real API server
                status[key] = value
        status['conditions'] = conditions
        if status != old:
            patch = {k: status.get(k) for k in set(old) | set(status)}
            await self.merge_patch(DEPLOYMENTS, deployment, {'status': patch},
                                   'kube-controller-manager', sub='status')

    # -- scheduler & kubelet -------------------------------------------------------------------------

    async def schedule_and_run_pods(self) -> None:
        live_uids = set()
        for pod in self.api.list_objects(PODS):
            md, spec = meta(pod), pod.get('spec') or {}
            uid = md.get('uid')
            live_uids.add(uid)
            if is_deleting(pod):
                if md.get('deletionGracePeriodSeconds') != 0 and uid not in self.killing_pods:
                    self.killing_pods.add(uid)
                    for c in spec.get('containers') or []:
                        await self.event(pod, PODS, 'Normal', 'Killing', f'Stopping container {c.get("name")}',
                                         field_path=f'spec.containers{{{c.get("name")}}}')
                    await self.delete(PODS, pod, gracePeriodSeconds=0)
                continue
            if not spec.get('nodeName'):
                status, _ = await self.call('POST', self.path(PODS, md.get('namespace'), md['name'], 'binding'),
                                            {'apiVersion': 'v1', 'kind': 'Binding',
                                             'metadata': {'name': md['name'], 'namespace': md.get('namespace')},
                                             'target': {'apiVersion': 'v1', 'kind': 'Node', 'name': NODE_NAME}})
                if status < 300:
                    await self.event(pod, PODS, 'Normal', 'Scheduled',
                                     f'Successfully assigned {md.get("namespace")}/{md["name"]} to {NODE_NAME}',
                                     component='default-scheduler')
                continue
            if spec.get('nodeName') != NODE_NAME or uid in self.started_pods:
                continue
            if (pod.get('status') or {}).get('containerStatuses'):
                self.started_pods.add(uid)  # somebody else already set the status: never overwrite it
                continue
            status_code = await self.merge_patch(PODS, pod, {'status': self.kubelet_status(pod)},
                                                 'kubelet', sub='status')
            if status_code < 300:
                self.started_pods.add(uid)
                await self.kubelet_events(pod)
        self.started_pods &= live_uids
        self.killing_pods &= live_uids

    @staticmethod
    def kubelet_status(pod: dict) -> dict:
        now = now_rfc3339()
        statuses, all_ready = [], True
        for c in (pod.get('spec') or {}).get('containers') or []:
            name, image = c.get('name'), c.get('image', '')
            if 'unpullable' in image:
                all_ready = False
                statuses.append({
                    'name': name, 'image': image, 'imageID': '', 'ready': False, 'started': False,
                    'restartCount': 0, 'lastState': {},
                    'state': {'waiting': {'reason': 'ErrImagePull', 'message': (
                        f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": not found')}}})
            else:
                digest = hashlib.sha256(f'{meta(pod).get("uid")}/{name}'.encode()).hexdigest()
                repo = image.split('@')[0]
                if ':' in repo.rsplit('/', 1)[-1]:
                    repo = repo.rsplit(':', 1)[0]
                statuses.append({
                    'name': name, 'image': image,
                    'imageID': f'{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}',
                    'containerID': f'containerd://{digest}', 'ready': True, 'started': True,
                    'restartCount': 0, 'lastState': {}, 'state': {'running': {'startedAt': now}}})

        def cond(type_: str, ok: bool) -> dict:
            out = {'type': type_, 'status': 'True' if ok else 'False', 'lastProbeTime': None,
                   'lastTransitionTime': now}
            if not ok and type_ in ('Ready', 'ContainersReady'):
                waiting = [s['name'] for s in statuses if not s['ready']]
                out['reason'] = 'ContainersNotReady'
                out['message'] = f'containers with unready status: [{" ".join(waiting)}]'
            return out
        return {
            'phase': 'Running' if all_ready else 'Pending',
            'conditions': [cond('PodReadyToStartContainers', True), cond('Initialized', True),
                           cond('Ready', all_ready), cond('ContainersReady', all_ready),
                           cond('PodScheduled', True)],
            'hostIP': NODE_IP, 'hostIPs': [{'ip': NODE_IP}],
            'podIP': POD_IP, 'podIPs': [{'ip': POD_IP}],
            'startTime': now,
            'containerStatuses': statuses,
            'qosClass': (pod.get('status') or {}).get('qosClass') or qos_class(pod.get('spec') or {}),
        }

    async def kubelet_events(self, pod: dict) -> None:
        for c in (pod.get('spec') or {}).get('containers') or []:
            name, image = c.get('name'), c.get('image', '')
            where = f'spec.containers{{{name}}}'
            if 'unpullable' in image:
                await self.event(pod, PODS, 'Normal', 'Pulling', f'Pulling image "{image}"', field_path=where)
                await self.event(pod, PODS, 'Warning', 'Failed', (
                    f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull '
                    f'and unpack image "{image}": not found'), field_path=where)
                await self.event(pod, PODS, 'Warning', 'Failed', 'Error: ErrImagePull', field_path=where)
            else:
                await self.event(pod, PODS, 'Normal', 'Pulled',
                                 f'Container image "{image}" already present on machine', field_path=where)
                await self.event(pod, PODS, 'Normal', 'Created', f'Created container: {name}', field_path=where)
                await self.event(pod, PODS, 'Normal', 'Started', f'Started container {name}', field_path=where)


# ---------------------------------------------------------------------------------------------
# Process entry point.
# ---------------------------------------------------------------------------------------------

async def serve(port_file: str, requests_file: str | None, verbose: bool) -> None:
    api = FakeKubernetes(requests_path=requests_file, verbose=verbose)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with api:  # kmock handlers must be entered (error accumulation, stream feeder)
        server = aiohttp.web.Server(api, handler_cancellation=True)
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, '127.0.0.1', 0)
        await site.start()
        port = runner.addresses[0][1]
        controllers = FakeControllers(api, f'http://127.0.0.1:{port}')
        task = asyncio.create_task(controllers.run())
        tmp = port_file + '.tmp'
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(str(port))
        os.rename(tmp, port_file)
        if verbose:
            print(f'kmock: listening on http://127.0.0.1:{port}', file=sys.stderr)
        await stop.wait()
        api.stopping = True
        api._notify()  # wake the watchers so that they finish their streams
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        try:
            await asyncio.wait_for(runner.cleanup(), timeout=3)
        except asyncio.TimeoutError:
            pass
        if api._requests_fh is not None:
            api._requests_fh.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--port-file', required=True, help='where to write the listening port (atomically)')
    parser.add_argument('--requests-file', help='append one JSON line per client request here')
    parser.add_argument('--verbose', action='store_true', help='log every request to stderr')
    args = parser.parse_args()
    asyncio.run(serve(args.port_file, args.requests_file, args.verbose))
    return 0


if __name__ == '__main__':
    sys.exit(main())

# Starts moto's server and ties its life to the process that started it.
#
# CloudPulse keeps this process's standard input open for as long as it wants
# moto to run. When CloudPulse exits, however it exits (Ctrl-C, a crash,
# kill -9), the pipe closes, the read below returns, and moto goes with it, so
# no stray server is left holding a port.
#
# moto serves the sandbox on this machine only. Its global CORS (which answers
# every page `Access-Control-Allow-Origin: *`) is off, and a request that
# carries what only a browser sends (Origin, Sec-Fetch-*) or names a Host
# other than a loopback address (a DNS-rebinding page's own name) is answered
# 403 before moto sees it. The AWS SDK sends none of these.
#
# With CLOUDPULSE_MOTO_STATE set to a folder, moto's state outlives it: it
# is read back from there before the server starts, written every few
# seconds while it runs (what changed), and written once more when it is
# told to go. moto itself keeps everything in memory only; its backends are
# plain Python objects, pickled together so that references between
# services survive. Unpickling runs code, so the folder must be this user's
# own and closed to everyone else (mode 0700), and so must every file read
# from it; anything else stops moto with a message saying what to fix.
import io
import json
import os
import pickle
import signal
import sys
import threading
import time

STATE = os.environ.get("CLOUDPULSE_MOTO_STATE")
SAVE_EVERY_SECONDS = 5
# Every service whose resources a CloudPulse deployment creates, in groups
# pickled together (objects refer to each other within a group, never
# across). Each group is its own file, written only when it changed, and
# looked at every so many seconds: S3 holds the instance binary, tens of
# megabytes that change at a deploy and a teardown, so it is looked at
# less often (and always at exit). Not SSM: the engine only reads its
# public parameters, Run Commands are over when they are over, and its
# backend holds a lambda, which pickle refuses.
GROUPS = {
    "control": ["autoscaling", "cloudwatch", "ec2", "elb", "elbv2", "iam", "sts"],
    "s3": ["s3"],
}
EVERY = {"control": SAVE_EVERY_SECONDS, "s3": 60}
_saving = threading.Lock()
_last_saved = {}


class _Pickler(pickle.Pickler):
    """Pickles AWS's own managed policies by name: moto loads the same ~1,600
    of them, in every partition, at every start, and they would be most of
    the IAM backend's size."""

    def __init__(self, file):
        from moto.iam.models import AWSManagedPolicy

        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._managed = AWSManagedPolicy

    def persistent_id(self, obj):
        if isinstance(obj, self._managed):
            return ("aws-managed-policy", obj.arn)
        return None


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        from moto.backends import get_backend
        from moto.core import DEFAULT_ACCOUNT_ID

        kind, arn = pid
        if kind != "aws-managed-policy":
            raise pickle.UnpicklingError(f"unknown reference {kind}")
        partition = arn.split(":")[1]
        return get_backend("iam")[DEFAULT_ACCOUNT_ID][partition].managed_policies[arn]


def _say(message):
    try:
        print(f"cloudpulse-moto: {message}", flush=True)
    except OSError:  # nobody reads our output any more (the parent is gone)
        pass


def _file(group):
    return os.path.join(STATE, f"{group}.pickle")


class UnsafeState(Exception):
    """The state folder or a file in it could be written by someone else."""


def _check_owned(path, info, what):
    import stat

    if info.st_uid != os.geteuid():
        raise UnsafeState(
            f"the sandbox's {what} {path} belongs to user {info.st_uid}, not to this user "
            f"({os.geteuid()}); moto's state is code to Python, so only a folder of your own "
            "is read: remove it, or point the sandbox at another database"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise UnsafeState(
            f"the sandbox's {what} {path} is open to other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); moto's state is code to Python: "
            f"chmod 700 the folder and 600 its files, or remove it"
        )


def _check_folder():
    import stat

    os.makedirs(STATE, mode=0o700, exist_ok=True)
    info = os.lstat(STATE)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeState(f"the sandbox's state folder {STATE} is not a folder (a link?)")
    _check_owned(STATE, info, "state folder")


def _read_own(path):
    """The bytes of `path`, read only if it is a plain file of this user's
    that nobody else may write; not through a symbolic link."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeState(f"the sandbox's state file {path} is not a plain file")
        _check_owned(path, info, "state file")
        with os.fdopen(fd, "rb") as file:
            fd = None
            return file.read()
    finally:
        if fd is not None:
            os.close(fd)


def _restore():
    from moto.backends import get_backend

    _check_folder()
    for group in GROUPS:
        path = _file(group)
        try:
            data = _read_own(path)
            for name, accounts in _Unpickler(io.BytesIO(data)).load():
                get_backend(name).update(accounts)
            _last_saved[group] = data
            _say(f"restored {', '.join(GROUPS[group])} from {path}")
        except FileNotFoundError:
            pass
        except UnsafeState:
            raise
        except OSError as error:  # a link (O_NOFOLLOW), a file we may not read
            raise UnsafeState(f"cannot read the sandbox's state file {path}: {error}")
        except Exception as error:  # a file from another moto, or a torn one
            aside = path + ".unreadable"
            os.replace(path, aside)
            _say(f"cannot restore {path} ({error!r}); those services start empty, the old file is {aside}")


def _snapshot(services):
    from moto.backends import get_backend

    for attempt in range(5):
        try:
            buffer = io.BytesIO()
            _Pickler(buffer).dump([(name, dict(get_backend(name))) for name in services])
            return buffer.getvalue()
        except RuntimeError:  # a request changed a dict mid-pickle: again
            time.sleep(0.05)
    _say(f"could not take a consistent snapshot of {', '.join(services)}; keeping the previous one")
    return None


def _save(groups=GROUPS):
    with _saving:
        for group in groups:
            data = _snapshot(GROUPS[group])
            if data is None or data == _last_saved.get(group):
                continue
            path = _file(group)
            partial = path + ".partial"
            with open(partial, "wb") as file:
                os.chmod(partial, 0o600)
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)
            _last_saved[group] = data


def _save_now_and_then():
    last = {group: time.monotonic() for group in GROUPS}
    while True:
        time.sleep(SAVE_EVERY_SECONDS)
        now = time.monotonic()
        due = [group for group in GROUPS if now - last[group] >= EVERY[group] - 0.5]
        try:
            _save(due)
        except Exception as error:
            _say(f"cannot save the sandbox's state: {error!r}")
        for group in due:
            last[group] = now


def _exit(code=0):
    try:
        if STATE:
            _save()
    except Exception as error:
        _say(f"cannot save the sandbox's state: {error!r}")
    finally:
        os._exit(code)


def _exit_when_parent_is_gone():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        _exit(0)


# Read by moto when it is imported, so set before.
os.environ["MOTO_DISABLE_GLOBAL_CORS"] = "true"
try:
    import moto.server
    from moto import settings
    from moto.server import main
except ImportError as error:
    print(f"this Python has no moto[server] ({error}); run `cargo xtask setup`", flush=True)
    sys.exit(3)
if not settings.DISABLE_GLOBAL_CORS:
    print("cloudpulse-moto: moto's global CORS is still on; refusing to serve", flush=True)
    sys.exit(3)


def _is_loopback(host):
    """127.0.0.1, localhost or [::1], with or without a port."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return False
        name, rest = host[: end + 1], host[end + 1 :]
    else:
        name, colon, port = host.partition(":")
        rest = colon + port
    if rest:
        port = rest[1:]
        if not (rest.startswith(":") and port.isascii() and port.isdigit() and len(port) <= 5):
            return False
    return name in ("127.0.0.1", "[::1]") or name.lower() == "localhost"


def _refusal(environ):
    if "HTTP_ORIGIN" in environ:
        return "a request with an Origin header comes from a web page"
    for key in environ:
        if key.startswith("HTTP_SEC_FETCH_"):
            name = key[len("HTTP_"):].replace("_", "-").title()
            return f"a request with a {name} header comes from a browser"
    host = environ.get("HTTP_HOST")
    if host is None:
        return "the request names no Host"
    if not _is_loopback(host):
        return f"Host {host!r} is not 127.0.0.1, localhost or [::1]"
    return None


_signed = threading.local()


def _keep_form_body(environ):
    """The exact bytes of a form-encoded body (the query protocol's), kept
    for the signature check: werkzeug parses such a body into a form and
    moto would check the signature against its own re-encoding of it."""
    _signed.body = None
    _signed.caller = None
    kind = environ.get("CONTENT_TYPE", "")
    length = environ.get("CONTENT_LENGTH", "")
    if kind.startswith("application/x-www-form-urlencoded") and length.isdigit():
        body = environ["wsgi.input"].read(int(length))
        environ["wsgi.input"] = io.BytesIO(body)
        _signed.body = body


class _OnlyThisMachine(moto.server.DomainDispatcherApplication):
    def __call__(self, environ, start_response):
        reason = _refusal(environ)
        if reason is None:
            _keep_form_body(environ)
            return super().__call__(environ, start_response)
        body = f"403 Forbidden: moto serves the sandbox on this machine only; {reason}\n".encode()
        start_response(
            "403 Forbidden",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]


# moto.server.main builds its application from this name.
moto.server.DomainDispatcherApplication = _OnlyThisMachine

_namespace = threading.local()


def _keep_namespaces_apart():
    """moto 5.2.5's GetMetricData drops the namespace filter when a query
    names dimensions, so an instance's own CloudPulse CPUUtilization is
    averaged into AWS/EC2's. Each namespace's queries are answered here
    against that namespace's metrics alone, as on AWS."""
    from moto.cloudwatch.models import CloudWatchBackend

    all_metrics = CloudWatchBackend.get_all_metrics
    get_metric_data = CloudWatchBackend.get_metric_data

    def metrics_of_the_namespace(self):
        metrics = all_metrics(self)
        wanted = getattr(_namespace, "name", None)
        return metrics if wanted is None else [m for m in metrics if m.namespace == wanted]

    def by_namespace(self, queries, start_time, end_time, scan_by="TimestampAscending"):
        groups = {}
        for query in queries:
            name = query.get("MetricStat", {}).get("Metric", {}).get("Namespace")
            groups.setdefault(name, []).append(query)
        answers = {}
        for name, group in groups.items():
            _namespace.name = name
            try:
                for answer in get_metric_data(self, group, start_time, end_time, scan_by):
                    answers[answer["id"]] = answer
            finally:
                _namespace.name = None
        return [answers[q["Id"]] for q in queries if q["Id"] in answers]

    CloudWatchBackend.get_all_metrics = metrics_of_the_namespace
    CloudWatchBackend.get_metric_data = by_namespace


_keep_namespaces_apart()


def _scale_like_auto_scaling():
    """moto 5.2.5 launches every instance of a group in the first subnet of
    its VPCZoneIdentifier, scales in the oldest instances wherever they are,
    and terminates a leaving instance in EC2 at once. Auto Scaling spreads
    a group evenly over the Availability Zones of its subnets, launches each
    instance in the zone with the fewest, scales in from the zone with the
    most, and takes a leaving instance through `Terminating` while its
    load balancer targets drain; only then is it terminated in EC2. Here:

    - each launch goes to the zone of the group's subnets with the fewest
      instances in service (ties to the one launched into least recently,
      then the first listed), in that zone's subnet with the fewest, one
      instance at a time;
    - a scale-in picks, one at a time, from the zone with the most
      instances in service, among those unprotected the one closest to its
      next billing hour (AWS's default termination policy; the launch
      template step is not modelled: a group's instances share one);
    - a scaled-in instance, and one terminated through
      TerminateInstanceInAutoScalingGroup, stays in the group as
      `Terminating`, running in EC2; the sandbox's data plane terminates it
      once its targets have drained (an EC2 TerminateInstances, which
      removes it from the group without a replacement, since it was no
      longer in service). A replacement is launched as it goes Terminating;
    - after a change of capacity or a termination leaves the zones more
      than one apart, the group rebalances: it launches in the emptiest
      zone first, then takes one out of the fullest;
    - a change of the group's subnets rebalances it too, and an instance
      in a zone the group no longer lists is replaced in the emptiest
      remaining zone, then taken out of service (Terminating);
    - a deleted group's instances, Terminating or not, are terminated at
      once, as ForceDelete does."""
    import datetime
    from moto.autoscaling import models

    group_class = models.FakeAutoScalingGroup
    backend_class = models.AutoScalingBackend
    launch = group_class.replace_autoscaling_group_instances
    set_desired = group_class.set_desired_capacity
    delete_group = backend_class.delete_auto_scaling_group

    def zones_and_subnets(group):
        """The group's zones in the order its subnets name them, each with
        its subnets (`[None]` for a group given zones, not subnets)."""
        if not group.vpc_zone_identifier:
            return {zone: [None] for zone in group.availability_zones}
        ids = [s.strip() for s in group.vpc_zone_identifier.split(",") if s.strip()]
        described = group.autoscaling_backend.ec2_backend.describe_subnets(subnet_ids=ids)
        zone_of = {subnet.id: subnet.availability_zone for subnet in described}
        zones = {}
        for subnet in ids:
            if subnet in zone_of:
                zones.setdefault(zone_of[subnet], []).append(subnet)
        return zones

    def in_service_by(group, key):
        counts = {}
        for state in group.active_instances():
            value = key(state)
            counts[value] = counts.get(value, 0) + 1
        return counts

    def launched(state):
        at = state.instance.launch_time
        if not isinstance(at, datetime.datetime):
            return datetime.datetime.min
        return at.replace(tzinfo=None)

    def emptiest(group):
        """Of the zones with the fewest instances in service, the one
        launched into least recently (so that a group whose instances are
        replaced one by one keeps its spread), then the first listed."""
        zones = zones_and_subnets(group)
        per_zone = in_service_by(group, lambda s: s.instance.placement.zone)
        per_subnet = in_service_by(group, lambda s: s.instance.subnet_id)
        newest = {}
        for state in group.active_instances():
            zone = state.instance.placement.zone
            newest[zone] = max(newest.get(zone, datetime.datetime.min), launched(state))
        zone = min(
            zones,
            key=lambda z: (per_zone.get(z, 0), newest.get(z, datetime.datetime.min)),
        )
        return zone, min(zones[zone], key=lambda s: per_subnet.get(s, 0))

    def launch_evenly(self, count_needed, propagated_tags):
        if not (self.vpc_zone_identifier or self.availability_zones):
            return launch(self, count_needed, propagated_tags)
        for _ in range(count_needed):
            zone, subnet = emptiest(self)
            kept = (self.vpc_zone_identifier, self.availability_zones)
            self.vpc_zone_identifier, self.availability_zones = subnet, [zone]
            try:
                launch(self, 1, dict(propagated_tags))
            finally:
                self.vpc_zone_identifier, self.availability_zones = kept

    def seconds_into_billing_hour(state):
        from moto.core.utils import utcnow

        launched = state.instance.launch_time
        if not isinstance(launched, datetime.datetime):
            return 0
        return (utcnow() - launched.replace(tzinfo=None)).total_seconds() % 3600

    def take_out_of_service(group, count):
        """Marks `count` instances Terminating, as the default policy picks."""
        for _ in range(count):
            in_service = group.active_instances()
            candidates = [s for s in in_service if not s.protected_from_scale_in]
            if not candidates:
                return
            per_zone = in_service_by(group, lambda s: s.instance.placement.zone)
            zone = max(
                (s.instance.placement.zone for s in candidates),
                key=lambda z: per_zone.get(z, 0),
            )
            in_zone = [s for s in candidates if s.instance.placement.zone == zone]
            leaving = max(in_zone, key=seconds_into_billing_hour)
            leaving.lifecycle_state = "Terminating"

    def rebalance(group):
        zones = zones_and_subnets(group)
        # A zone the group left: each instance there is replaced in the
        # emptiest remaining zone, then taken out of service.
        for state in list(group.active_instances()):
            if zones and state.instance.placement.zone not in zones:
                launch_evenly(group, 1, group.get_propagated_tags())
                state.lifecycle_state = "Terminating"
        for _ in range(len(group.active_instances())):
            per_zone = in_service_by(group, lambda s: s.instance.placement.zone)
            counts = [per_zone.get(z, 0) for z in zones]
            if not counts or max(counts) - min(counts) <= 1:
                return
            launch_evenly(group, 1, group.get_propagated_tags())
            take_out_of_service(group, 1)

    def plain(group):
        return not getattr(group, "_cloudpulse_at_once", False) and not (
            group.mixed_instances_policy
            and group.mixed_instances_policy.get("LaunchTemplate", {}).get("Overrides")
        )

    def set_desired_evenly(self, new_capacity):
        if not plain(self):
            return set_desired(self, new_capacity)
        target = self.min_size if new_capacity is None else new_capacity
        excess = len(self.active_instances()) - (target or 0)
        if excess > 0:
            take_out_of_service(self, excess)
        set_desired(self, new_capacity)
        rebalance(self)
        if self.name in self.autoscaling_backend.autoscaling_groups:
            self.autoscaling_backend.update_attached_target_groups(self.name)

    def terminate_through_auto_scaling(self, instance_id, should_decrement):
        state = next(
            s
            for group in self.autoscaling_groups.values()
            for s in group.instance_states
            if s.instance.id == instance_id
        )
        group = state.instance.autoscaling_group
        if not plain(group):
            return terminate_at_once(self, instance_id, should_decrement)
        original_size = group.desired_capacity
        state.lifecycle_state = "Terminating"
        if should_decrement:
            group.desired_capacity = original_size - 1
        group.set_desired_capacity(group.desired_capacity)
        return models.TerminateInstanceActivity(state.instance, original_size)

    def delete_at_once(self, group_name):
        group = self.autoscaling_groups.get(group_name)
        if group is not None:
            group._cloudpulse_at_once = True
            leaving = [s for s in group.instance_states if s.lifecycle_state != "InService"]
            if leaving:
                self.ec2_backend.terminate_instances([s.instance.id for s in leaving])
                group.instance_states = [s for s in group.instance_states if s not in leaving]
        try:
            return delete_group(self, group_name)
        finally:
            if group is not None:
                group._cloudpulse_at_once = False

    def update_and_spread(self, *args, **kwargs):
        subnets = self.vpc_zone_identifier
        update(self, *args, **kwargs)
        if plain(self) and self.vpc_zone_identifier != subnets:
            rebalance(self)
            self.autoscaling_backend.update_attached_target_groups(self.name)

    terminate_at_once = backend_class.terminate_instance
    update = group_class.update
    group_class.update = update_and_spread
    group_class.replace_autoscaling_group_instances = launch_evenly
    group_class.set_desired_capacity = set_desired_evenly
    backend_class.terminate_instance = terminate_through_auto_scaling
    backend_class.delete_auto_scaling_group = delete_at_once


_scale_like_auto_scaling()


def _update_keeps_the_cooldown():
    """moto 5.2.5's UpdateAutoScalingGroup ignores DefaultCooldown, so a
    changed cooldown would never reach the group (and the faithful layer,
    which reads it back, would keep timing scaling by the old one). AWS
    sets it, 0 included. Here the update runs as moto has it, then the
    group takes the cooldown the request gave."""
    from moto.autoscaling import responses

    update = responses.AutoScalingResponse.update_auto_scaling_group

    def update_with_cooldown(self):
        answer = update(self)
        cooldown = self._get_int_param("DefaultCooldown")
        if cooldown is not None:
            name = self._get_param("AutoScalingGroupName")
            group = self.autoscaling_backend.autoscaling_groups.get(name)
            if group is not None:
                group.default_cooldown = cooldown
        return answer

    responses.AutoScalingResponse.update_auto_scaling_group = update_with_cooldown


_update_keeps_the_cooldown()


def _template_versions_keep_their_user_data():
    """moto 5.2.5 keeps a CreateLaunchTemplateVersion's UserData as the
    plain text it was sent (CreateLaunchTemplate decodes it), and every
    launch from such a version then fails with an HTTP 500 (an assertion
    in moto). AWS keeps a new version's user data as it keeps the first's.
    Here a version's text is taken as CreateLaunchTemplate takes it."""
    from moto.ec2.models import launch_templates
    from moto.ec2.utils import parse_user_data

    create_version = launch_templates.LaunchTemplate.create_version

    def create_version_decoded(self, data, description):
        if isinstance(data.get("UserData"), str):
            data = dict(data, UserData=parse_user_data(data["UserData"]))
        return create_version(self, data, description)

    launch_templates.LaunchTemplate.create_version = create_version_decoded


_template_versions_keep_their_user_data()

# IAM is enforced: moto checks every request's signature and permissions
# (the portal's launcher sets INITIAL_NO_AUTH_ACTION_COUNT=0, so no request
# goes unchecked). The identities that may sign come from
# CLOUDPULSE_SANDBOX_IDENTITIES, a JSON list of IAM users, each with its
# access key and inline policies: the sandbox's own (AWS's services and the
# account's administrator) and the portal's (the operator policy's sandbox
# copy). They are put into moto's IAM at start, after a restored state and
# after every reset, with the keys the portal was given, so its credentials
# hold across both.
IDENTITIES = json.loads(os.environ.get("CLOUDPULSE_SANDBOX_IDENTITIES") or "[]")
# The identity that stands for AWS's own services: when it assumes a role,
# it does so as EC2 does for an instance profile.
SERVICE_USER = os.environ.get("CLOUDPULSE_SANDBOX_SERVICE_USER")


def _install_identities():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import AccessKey, iam_backends

    iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for identity in IDENTITIES:
        name = identity["user"]
        user = iam.users.get(name) or iam.create_user(region_name="us-east-1", user_name=name)
        for old in list(user.access_keys):
            iam.access_keys.pop(old.physical_resource_id, None)
        user.access_keys = []
        user.policies = {}
        for policy_name, document in identity["policies"].items():
            iam.put_user_policy(name, policy_name, document)
        key = AccessKey(name, prefix="AKIA", account_id=DEFAULT_ACCOUNT_ID)
        key.access_key_id = identity["access_key_id"]
        key.secret_access_key = identity["secret_access_key"]
        user.access_keys.append(key)
        iam.access_keys[key.physical_resource_id] = key


def _reinstall_identities_after_reset():
    from moto.moto_api._internal.models import MotoAPIBackend

    reset = MotoAPIBackend.reset

    def reset_and_reinstall(self):
        reset(self)
        _install_identities()

    MotoAPIBackend.reset = reset_and_reinstall


# What moto 5.2.5 names differently from IAM: CloudWatch's actions by its
# signing name (`monitoring:`), and these S3 requests.
_S3_ACTIONS = {
    "s3:HeadBucket": "s3:ListBucket",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "s3:DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
}


def _iam_action(action, method, path):
    service, _, name = action.partition(":")
    if service == "monitoring":
        return f"cloudwatch:{name}"
    if service == "s3":
        query = path.partition("?")[2]
        keys = {part.partition("=")[0] for part in query.split("&") if part}
        # moto authorises a bucket's encryption as its create or its delete.
        if "encryption" in keys:
            return "s3:GetEncryptionConfiguration" if method == "GET" else "s3:PutEncryptionConfiguration"
        return _S3_ACTIONS.get(action, action)
    return action


def _statement_allows(statement, action, principal_of):
    import fnmatch

    if statement.get("Effect") != "Allow":
        return False
    actions = statement.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions):
        return False
    principal = statement.get("Principal", {})
    if principal == "*":
        return True
    return any(principal_of(kind, principal.get(kind)) for kind in ("AWS", "Service"))


def _faithful_iam_checks():
    """moto's IAM checks, as IAM makes them where moto 5.2.5 does not: the
    signature checked against the body as sent (see _keep_form_body), a
    refusal in each protocol's own form (EC2's `UnauthorizedOperation`, the
    JSON services' `AccessDeniedException`), actions named as IAM names
    them (above), and the trust policy of a role
    being assumed read with its Service principals. AWS's own services sign
    as SERVICE_USER; when it assumes a role (the data plane handing an
    instance its role's credentials) the trust policy must name
    ec2.amazonaws.com, as AWS requires of an instance profile's role. Any
    other caller must be named among the AWS principals (its ARN, its
    account's root, or "*"). moto's own check fails on a Service principal."""
    from moto.iam import access_control

    base_init = access_control.IAMRequestBase.__init__

    def init(self, account_id, method, path, data, body, headers, action):
        base_init(self, account_id, method, path, data, body, headers, action)
        self._action = _iam_action(self._action, method, path)
        _signed.caller = getattr(self._access_key, "arn", None)

    def trusted(self, role_arn):
        role = self.backend.get_role_by_arn(role_arn)
        document = json.loads(role.assume_role_policy_document)
        caller = self._access_key.arn
        as_service = SERVICE_USER is not None and caller.endswith(f":user/{SERVICE_USER}")

        def principal_of(kind, named):
            names = [named] if isinstance(named, str) else (named or [])
            if kind == "Service":
                return as_service and "ec2.amazonaws.com" in names
            root = f"arn:aws:iam::{self.account_id}:root"
            return not as_service and any(n in ("*", caller, root, self.account_id) for n in names)

        statements = document.get("Statement", [])
        statements = [statements] if isinstance(statements, dict) else statements
        return any(_statement_allows(s, self._action, principal_of) for s in statements)

    base_request = access_control.IAMRequestBase._create_aws_request

    def signed_request(self):
        request = base_request(self)
        body = getattr(_signed, "body", None)
        if body is not None:
            request.data = body
        return request

    from moto.core.exceptions import JsonRESTError, _RESTError

    class UnauthorizedOperation(_RESTError):
        code = 403

        def __init__(self, user_arn, action):
            super().__init__(
                "UnauthorizedOperation",
                f"You are not authorized to perform this operation. User: {user_arn} is not "
                f"authorized to perform: {action} because no identity-based policy allows the "
                f"{action} action",
            )

    class QueryAccessDenied(_RESTError):
        """The query protocol's error (IAM, ELB, Auto Scaling, CloudWatch):
        `<ErrorResponse><Error>`, not moto's `<Errors>` list, which the SDK
        cannot read."""

        code = 403

        def __init__(self, user_arn, action):
            super().__init__("AccessDenied", "")
            from xml.sax.saxutils import escape

            message = escape(f"User: {user_arn} is not authorized to perform: {action}")
            self.description = (
                '<?xml version="1.0" encoding="utf-8"?>\n<ErrorResponse><Error><Type>Sender</Type>'
                f"<Code>AccessDenied</Code><Message>{message}</Message></Error></ErrorResponse>"
            )

    def denied(self):
        arn, action = self._access_key.arn, self._action
        if self._service == "ec2":
            raise UnauthorizedOperation(arn, action)
        kind = self._headers.get("Content-Type", "") or ""
        if kind.startswith("application/x-amz-json"):
            raise JsonRESTError(
                "AccessDeniedException",
                f"User: {arn} is not authorized to perform: {action}",
            )
        raise QueryAccessDenied(arn, action)

    access_control.IAMRequest._raise_access_denied = denied
    access_control.IAMRequestBase.__init__ = init
    access_control.IAMRequestBase._create_aws_request = signed_request
    access_control.IAMRequestBase._check_role_trust_relationship = trusted


_faithful_iam_checks()
_reinstall_identities_after_reset()


def _aws_publishes_its_parameters():
    """AWS announces a newer Amazon Linux by moving its public parameter
    (/aws/service/ami-amazon-linux-latest/...) to the new AMI; no account
    may write there, and moto 5.2.5 refuses a PutParameter under /aws as
    AWS does. Here AWS's own services (SERVICE_USER) may: their
    PutParameter under /aws/service/ adds a version, as AWS's publishing
    does, so that a test (or a person, with the sandbox's service key) can
    publish a newer image and watch a live stack's plan offer it."""
    from moto.core.utils import utcnow
    from moto.ssm import models

    put = models.SimpleSystemManagerBackend.put_parameter

    def put_as_aws(self, name, description, value, parameter_type, *rest, **kwargs):
        caller = getattr(_signed, "caller", None) or ""
        as_aws = SERVICE_USER is not None and caller.endswith(f":user/{SERVICE_USER}")
        if not (as_aws and str(name).startswith("/aws/service/")):
            return put(self, name, description, value, parameter_type, *rest, **kwargs)
        versions = self._parameters[name]
        previous = versions[-1] if versions else None
        parameter = models.Parameter(
            account_id=self.account_id,
            name=name,
            value=value,
            parameter_type=parameter_type or (previous.parameter_type if previous else "String"),
            description=description,
            allowed_pattern=None,
            keyid=None,
            last_modified_date=utcnow(),
            version=previous.version + 1 if previous else 1,
            data_type=previous.data_type if previous else "text",
        )
        versions.append(parameter)
        return parameter

    models.SimpleSystemManagerBackend.put_parameter = put_as_aws


_aws_publishes_its_parameters()

# A Ctrl-C in the terminal reaches this process too; the portal decides what
# it means and closes the pipe when moto should go.
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, lambda *_: _exit(0))
if STATE:
    try:
        _restore()
    except UnsafeState as error:
        print(f"cloudpulse-moto: {error}", flush=True)
        sys.exit(4)
    threading.Thread(target=_save_now_and_then, daemon=True).start()
_install_identities()
threading.Thread(target=_exit_when_parent_is_gone, daemon=True).start()
sys.exit(main(sys.argv[1:]))

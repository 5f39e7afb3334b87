// nfs-subdir-external-provisioner for labtwin: the contract of upstream's v4.0.2 image
// (registry.k8s.io/sig-storage/nfs-subdir-external-provisioner), written on
// sigs.k8s.io/sig-storage-lib-external-provisioner/v13 because the Go module proxy refuses the
// upstream module (github.com/kubernetes-sigs/nfs-subdir-external-provisioner answers 403).
//
// Contract kept (upstream README and deploy/):
//   - env NFS_SERVER, NFS_PATH, PROVISIONER_NAME (the process exits with a message if one is
//     missing); the export is mounted at /persistentvolumes; KUBECONFIG for an out-of-cluster run;
//   - Provision: a directory ${namespace}-${pvcName}-${pvName} under /persistentvolumes, mode
//     0777 (chmod after mkdir: the umask does not narrow it), and a PV with spec.nfs {server:
//     NFS_SERVER, path: NFS_PATH/<dir>}, the StorageClass's reclaimPolicy and mountOptions, the
//     claim's access modes and requested size. StorageClass parameter pathPattern
//     (${.PVC.namespace}, ${.PVC.name}, ${.PVC.labels.<key>}, ${.PVC.annotations.<key>}) names
//     the directory instead when it expands to something non-empty;
//   - Delete (reclaimPolicy Delete): parameter onDelete "delete" removes the directory, "retain"
//     keeps it; otherwise archiveOnDelete "false" removes it; anything else (or no parameter)
//     renames it to archived-<dir>;
//   - ENABLE_LEADER_ELECTION=false turns leader election off.
//
// Differences from upstream v4.0.2, each on purpose:
//   - Leader election uses a Lease (coordination.k8s.io/v1 leases, named after PROVISIONER_NAME
//     with "/" as "-", in the pod's namespace), the only lock lib v13 offers: client-go removed
//     the Endpoints lock that upstream's lib v6 used. Its RBAC needs leases get/create/update in
//     that namespace, not (only) endpoints.
//   - A pathPattern that expands to a path leaving the export ("../x") is refused; Delete finds
//     the directory from the PV's path relative to NFS_PATH (upstream takes its last element,
//     which misses nested pathPattern directories).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

const (
	mountPath = "/persistentvolumes"
	dirMode   = os.FileMode(0o777)
	libModule = "sigs.k8s.io/sig-storage-lib-external-provisioner/v13"
)

// version is stamped by labtwin's build (-X main.version=...).
var version = "dev"

type nfsProvisioner struct {
	server string // NFS_SERVER: what the PVs name
	path   string // NFS_PATH: the export on that server
	root   string // where the export is mounted in this process (/persistentvolumes)
	// class returns a StorageClass by name (the API in main, a map in tests).
	class func(ctx context.Context, name string) (*storagev1.StorageClass, error)
}

var _ controller.Provisioner = &nfsProvisioner{}

// patternRef matches ${.PVC.<field>} in a pathPattern; <field> ends at the first "}".
var patternRef = regexp.MustCompile(`\$\{\.PVC\.([^}]*)\}`)

// expandPattern fills pathPattern's references from the claim; unknown ones become "".
func expandPattern(pattern string, pvc *v1.PersistentVolumeClaim) string {
	return patternRef.ReplaceAllStringFunc(pattern, func(ref string) string {
		field := patternRef.FindStringSubmatch(ref)[1]
		switch {
		case field == "name":
			return pvc.Name
		case field == "namespace":
			return pvc.Namespace
		case strings.HasPrefix(field, "labels."):
			return pvc.Labels[strings.TrimPrefix(field, "labels.")]
		case strings.HasPrefix(field, "annotations."):
			return pvc.Annotations[strings.TrimPrefix(field, "annotations.")]
		}
		return ""
	})
}

// volumeDir is the PV's directory relative to the export.
func volumeDir(params map[string]string, pvc *v1.PersistentVolumeClaim, pvName string) (string, error) {
	dir := strings.Join([]string{pvc.Namespace, pvc.Name, pvName}, "-")
	pattern, ok := params["pathPattern"]
	if !ok {
		return dir, nil
	}
	custom := expandPattern(pattern, pvc)
	if custom == "" {
		return dir, nil
	}
	rel := filepath.Clean(strings.TrimLeft(custom, "/"))
	if rel == "." {
		return dir, nil
	}
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("pathPattern %q gives %q, which is outside the export", pattern, custom)
	}
	return rel, nil
}

func (p *nfsProvisioner) Provision(ctx context.Context, opts controller.ProvisionOptions) (*v1.PersistentVolume, controller.ProvisioningState, error) {
	if opts.PVC.Spec.Selector != nil {
		return nil, controller.ProvisioningFinished, errors.New("claim Selector is not supported")
	}
	rel, err := volumeDir(opts.StorageClass.Parameters, opts.PVC, opts.PVName)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	full := filepath.Join(p.root, rel)
	klog.FromContext(ctx).V(2).Info("creating the volume's directory", "dir", full, "PVC", klog.KObj(opts.PVC))
	if err := os.MkdirAll(full, dirMode); err != nil {
		return nil, controller.ProvisioningFinished, fmt.Errorf("unable to create directory to provision new pv: %w", err)
	}
	if err := os.Chmod(full, dirMode); err != nil { // MkdirAll's mode passed through the umask
		return nil, controller.ProvisioningFinished, fmt.Errorf("unable to chmod the new pv's directory: %w", err)
	}
	reclaim := v1.PersistentVolumeReclaimDelete // the API's default for a StorageClass
	if opts.StorageClass.ReclaimPolicy != nil {
		reclaim = *opts.StorageClass.ReclaimPolicy
	}
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: opts.PVName},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   opts.PVC.Spec.AccessModes,
			MountOptions:                  opts.StorageClass.MountOptions,
			Capacity: v1.ResourceList{
				v1.ResourceStorage: opts.PVC.Spec.Resources.Requests[v1.ResourceStorage],
			},
			PersistentVolumeSource: v1.PersistentVolumeSource{
				NFS: &v1.NFSVolumeSource{Server: p.server, Path: path.Join(p.path, rel)},
			},
		},
	}
	return pv, controller.ProvisioningFinished, nil
}

// exportRelative is the PV's NFS path relative to the export, false if it is not under it.
func exportRelative(nfsPath, export string) (string, bool) {
	nfsPath, export = path.Clean(nfsPath), path.Clean(export)
	if export == "/" {
		export = ""
	}
	rel, ok := strings.CutPrefix(nfsPath, export+"/")
	if !ok || rel == "" {
		return "", false
	}
	return rel, true
}

type deleteAction int

const (
	archiveDir deleteAction = iota
	removeDir
	keepDir
)

// onDelete decides from the StorageClass parameters what Delete does with the directory.
func onDelete(params map[string]string) (deleteAction, error) {
	switch params["onDelete"] {
	case "delete":
		return removeDir, nil
	case "retain":
		return keepDir, nil
	}
	if s, ok := params["archiveOnDelete"]; ok {
		archive, err := strconv.ParseBool(s)
		if err != nil {
			return 0, fmt.Errorf("StorageClass parameter archiveOnDelete %q is not a boolean: %w", s, err)
		}
		if !archive {
			return removeDir, nil
		}
	}
	return archiveDir, nil
}

func (p *nfsProvisioner) Delete(ctx context.Context, pv *v1.PersistentVolume) error {
	logger := klog.FromContext(ctx)
	if pv.Spec.NFS == nil {
		return &controller.IgnoredError{Reason: "not an NFS volume"}
	}
	rel, ok := exportRelative(pv.Spec.NFS.Path, p.path)
	if !ok {
		logger.Info("the volume's path is not under NFS_PATH, deletion skipped", "PV", pv.Name,
			"path", pv.Spec.NFS.Path, "NFS_PATH", p.path)
		return nil
	}
	full := filepath.Join(p.root, rel)
	if _, err := os.Stat(full); errors.Is(err, os.ErrNotExist) {
		logger.Info("the volume's directory does not exist, deletion skipped", "PV", pv.Name, "dir", full)
		return nil
	}
	if pv.Spec.StorageClassName == "" {
		return fmt.Errorf("volume %s has no storage class", pv.Name)
	}
	class, err := p.class(ctx, pv.Spec.StorageClassName)
	if err != nil {
		return err
	}
	action, err := onDelete(class.Parameters)
	if err != nil {
		return err
	}
	switch action {
	case removeDir:
		logger.V(2).Info("removing the volume's directory", "PV", pv.Name, "dir", full)
		return os.RemoveAll(full)
	case keepDir:
		logger.V(2).Info("keeping the volume's directory", "PV", pv.Name, "dir", full)
		return nil
	}
	archived := filepath.Join(filepath.Dir(full), "archived-"+filepath.Base(full))
	logger.V(2).Info("archiving the volume's directory", "PV", pv.Name, "dir", full, "to", archived)
	return os.Rename(full, archived)
}

func fatal(format string, args ...any) {
	klog.ErrorSDepth(1, nil, fmt.Sprintf(format, args...))
	klog.FlushAndExit(klog.ExitFlushTimeout, 1)
}

func libVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == libModule {
				return m.Version
			}
		}
	}
	return "unknown"
}

func main() {
	klog.InitFlags(nil)
	flag.Parse()
	env := map[string]string{}
	for _, k := range []string{"NFS_SERVER", "NFS_PATH", "PROVISIONER_NAME"} {
		if env[k] = os.Getenv(k); env[k] == "" {
			fatal("environment variable %s is not set: the provisioner needs NFS_SERVER, NFS_PATH "+
				"and PROVISIONER_NAME (the StorageClass's provisioner)", k)
		}
	}
	leaderElection := true
	if s := os.Getenv("ENABLE_LEADER_ELECTION"); s != "" {
		var err error
		if leaderElection, err = strconv.ParseBool(s); err != nil {
			fatal("ENABLE_LEADER_ELECTION=%q is not a boolean: %v", s, err)
		}
	}
	var config *rest.Config
	var err error
	if kc := os.Getenv("KUBECONFIG"); kc != "" {
		config, err = clientcmd.BuildConfigFromFlags("", kc)
	} else {
		config, err = rest.InClusterConfig()
	}
	if err != nil {
		fatal("no Kubernetes client configuration: %v", err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		fatal("failed to create a Kubernetes client: %v", err)
	}
	server, err := client.Discovery().ServerVersion()
	if err != nil {
		fatal("cannot reach the Kubernetes API server: %v", err)
	}
	klog.InfoS("nfs-subdir-external-provisioner", "version", version, "library", libModule+"@"+libVersion(),
		"server", server.GitVersion, "provisioner", env["PROVISIONER_NAME"], "NFS_SERVER", env["NFS_SERVER"],
		"NFS_PATH", env["NFS_PATH"], "leaderElection", leaderElection)
	p := &nfsProvisioner{
		server: env["NFS_SERVER"], path: env["NFS_PATH"], root: mountPath,
		class: func(ctx context.Context, name string) (*storagev1.StorageClass, error) {
			return client.StorageV1().StorageClasses().Get(ctx, name, metav1.GetOptions{})
		},
	}
	// No cancellation on SIGTERM: the Go runtime ends the process (it is PID 1 in its container),
	// and lib v13's Run panics when a leader-elected run returns.
	ctx := context.Background()
	controller.NewProvisionController(ctx, client, env["PROVISIONER_NAME"], p,
		controller.LeaderElection(leaderElection)).Run(ctx)
}

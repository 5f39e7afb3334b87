package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

const export = "/nfsdata"

func claim(ns, name string, labels, annotations map[string]string) *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			Resources: v1.VolumeResourceRequirements{
				Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("100Mi")},
			},
		},
	}
}

func class(name string, reclaim v1.PersistentVolumeReclaimPolicy, params map[string]string) *storagev1.StorageClass {
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, ReclaimPolicy: &reclaim,
		Parameters: params, MountOptions: []string{"nfsvers=3", "nolock"}}
}

// newProvisioner works on a temp dir standing for /persistentvolumes; classes by name.
func newProvisioner(t *testing.T, classes ...*storagev1.StorageClass) *nfsProvisioner {
	t.Helper()
	return &nfsProvisioner{server: "10.0.0.6", path: export, root: t.TempDir(),
		class: func(_ context.Context, name string) (*storagev1.StorageClass, error) {
			for _, c := range classes {
				if c.Name == name {
					return c, nil
				}
			}
			return nil, errors.New("storageclass " + name + " not found")
		}}
}

func provision(t *testing.T, p *nfsProvisioner, sc *storagev1.StorageClass, pvc *v1.PersistentVolumeClaim, pvName string) *v1.PersistentVolume {
	t.Helper()
	pv, state, err := p.Provision(context.Background(), controller.ProvisionOptions{StorageClass: sc, PVName: pvName, PVC: pvc})
	if err != nil || state != controller.ProvisioningFinished {
		t.Fatalf("Provision: %v (%s)", err, state)
	}
	pv.Spec.StorageClassName = sc.Name // as the controller sets it before saving the PV
	return pv
}

func TestVolumeDir(t *testing.T) {
	pvc := claim("default", "test-statefulset-4", map[string]string{"app": "web"},
		map[string]string{"nfs.io/storage-path": "data/one"})
	for _, tc := range []struct {
		name, pattern string
		set           bool
		want          string
	}{
		{"no pattern", "", false, "default-test-statefulset-4-pvc-1"},
		{"namespace and annotation", "${.PVC.namespace}/${.PVC.annotations.nfs.io/storage-path}", true, "default/data/one"},
		{"name and label", "${.PVC.name}-${.PVC.labels.app}", true, "test-statefulset-4-web"},
		{"expands to empty", "${.PVC.annotations.missing}", true, "default-test-statefulset-4-pvc-1"},
		{"unknown field", "x${.PVC.uid}y", true, "xy"},
		{"missing annotation leaves the namespace", "${.PVC.namespace}/${.PVC.annotations.missing}", true, "default"},
		{"leading slash stays inside", "/${.PVC.name}", true, "test-statefulset-4"},
		{"dot is the default", "./", true, "default-test-statefulset-4-pvc-1"},
	} {
		params := map[string]string{}
		if tc.set {
			params["pathPattern"] = tc.pattern
		}
		got, err := volumeDir(params, pvc, "pvc-1")
		if err != nil || got != tc.want {
			t.Errorf("%s: volumeDir(%q) = %q, %v; want %q", tc.name, tc.pattern, got, err, tc.want)
		}
	}
	for _, pattern := range []string{"..", "../${.PVC.name}", "a/../../b"} {
		if got, err := volumeDir(map[string]string{"pathPattern": pattern}, pvc, "pvc-1"); err == nil {
			t.Errorf("volumeDir(%q) = %q, want an error (outside the export)", pattern, got)
		}
	}
}

func TestProvisionMakesA0777DirAndTheNFSPV(t *testing.T) {
	old := syscall.Umask(0o022) // MkdirAll's 0777 is narrowed by the umask; the chmod widens it again
	defer syscall.Umask(old)
	sc := class("test-sc", v1.PersistentVolumeReclaimRetain, map[string]string{"archiveOnDelete": "false"})
	p := newProvisioner(t, sc)
	pv := provision(t, p, sc, claim("default", "www-web-0", nil, nil), "pvc-42")

	dir := filepath.Join(p.root, "default-www-web-0-pvc-42")
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o777 {
		t.Fatalf("directory %s: %v, %v; want a directory with mode 0777", dir, st, err)
	}
	if pv.Name != "pvc-42" || pv.Spec.NFS == nil || *pv.Spec.NFS != (v1.NFSVolumeSource{Server: "10.0.0.6", Path: "/nfsdata/default-www-web-0-pvc-42"}) {
		t.Errorf("PV %s source %+v", pv.Name, pv.Spec.NFS)
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != v1.PersistentVolumeReclaimRetain {
		t.Errorf("reclaim policy %s, want the class's Retain", pv.Spec.PersistentVolumeReclaimPolicy)
	}
	if !slices.Equal(pv.Spec.MountOptions, []string{"nfsvers=3", "nolock"}) {
		t.Errorf("mount options %v, want the class's", pv.Spec.MountOptions)
	}
	if !slices.Equal(pv.Spec.AccessModes, []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce}) {
		t.Errorf("access modes %v", pv.Spec.AccessModes)
	}
	if q := pv.Spec.Capacity[v1.ResourceStorage]; q.String() != "100Mi" {
		t.Errorf("capacity %s, want the claim's 100Mi", q.String())
	}
}

func TestProvisionWithPathPatternMakesNestedDirs(t *testing.T) {
	sc := class("nested", v1.PersistentVolumeReclaimDelete, map[string]string{
		"pathPattern": "${.PVC.namespace}/${.PVC.annotations.nfs.io/storage-path}", "onDelete": "delete"})
	p := newProvisioner(t, sc)
	pv := provision(t, p, sc, claim("team", "c", nil, map[string]string{"nfs.io/storage-path": "db"}), "pvc-7")
	if pv.Spec.NFS.Path != "/nfsdata/team/db" {
		t.Errorf("NFS path %s, want /nfsdata/team/db", pv.Spec.NFS.Path)
	}
	if st, err := os.Stat(filepath.Join(p.root, "team", "db")); err != nil || st.Mode().Perm() != 0o777 {
		t.Fatalf("team/db: %v %v", st, err)
	}
	if err := p.Delete(context.Background(), pv); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p.root, "team", "db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("team/db still there after onDelete=delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(p.root, "team")); err != nil {
		t.Errorf("the parent team/ must stay: %v", err)
	}
}

func TestProvisionRefusesASelector(t *testing.T) {
	sc := class("sc", v1.PersistentVolumeReclaimDelete, nil)
	pvc := claim("default", "c", nil, nil)
	pvc.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}
	if _, _, err := newProvisioner(t, sc).Provision(context.Background(),
		controller.ProvisionOptions{StorageClass: sc, PVName: "pvc-1", PVC: pvc}); err == nil {
		t.Fatal("a claim with a selector was provisioned")
	}
}

func TestDeleteFollowsTheClassParameters(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params map[string]string
		want   []string // entries of the export afterwards
	}{
		{"no parameter archives", nil, []string{"archived-default-c-pvc-1"}},
		{"archiveOnDelete false removes", map[string]string{"archiveOnDelete": "false"}, nil},
		{"archiveOnDelete true archives", map[string]string{"archiveOnDelete": "true"}, []string{"archived-default-c-pvc-1"}},
		{"onDelete delete wins over archiveOnDelete", map[string]string{"onDelete": "delete", "archiveOnDelete": "true"}, nil},
		{"onDelete retain keeps", map[string]string{"onDelete": "retain", "archiveOnDelete": "false"}, []string{"default-c-pvc-1"}},
		{"other onDelete falls back to archiveOnDelete", map[string]string{"onDelete": "x", "archiveOnDelete": "false"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := class("sc", v1.PersistentVolumeReclaimDelete, tc.params)
			p := newProvisioner(t, sc)
			pv := provision(t, p, sc, claim("default", "c", nil, nil), "pvc-1")
			if err := os.WriteFile(filepath.Join(p.root, "default-c-pvc-1", "index.html"), []byte("v1"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := p.Delete(context.Background(), pv); err != nil {
				t.Fatal(err)
			}
			if got := entries(t, p.root); !slices.Equal(got, tc.want) {
				t.Errorf("export holds %v, want %v", got, tc.want)
			}
			if len(tc.want) == 1 { // kept or archived with its content
				if b, err := os.ReadFile(filepath.Join(p.root, tc.want[0], "index.html")); err != nil || string(b) != "v1" {
					t.Errorf("content lost: %q %v", b, err)
				}
			}
		})
	}
}

func TestDeleteEdgeCases(t *testing.T) {
	sc := class("sc", v1.PersistentVolumeReclaimDelete, map[string]string{"archiveOnDelete": "maybe"})
	p := newProvisioner(t, sc)
	pv := provision(t, p, sc, claim("default", "c", nil, nil), "pvc-1")
	if err := p.Delete(context.Background(), pv); err == nil {
		t.Error("archiveOnDelete \"maybe\" was accepted")
	}
	if got := entries(t, p.root); !slices.Equal(got, []string{"default-c-pvc-1"}) {
		t.Errorf("a refused delete touched the export: %v", got)
	}

	gone := pv.DeepCopy()
	gone.Spec.NFS.Path = "/nfsdata/never-made"
	if err := p.Delete(context.Background(), gone); err != nil {
		t.Errorf("a missing directory must be skipped: %v", err)
	}
	for _, path := range []string{"/elsewhere/default-c-pvc-1", "/nfsdata", "/nfsdata/"} {
		other := pv.DeepCopy()
		other.Spec.NFS.Path = path
		if err := p.Delete(context.Background(), other); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		if got := entries(t, p.root); !slices.Equal(got, []string{"default-c-pvc-1"}) {
			t.Errorf("deleting a PV at %s touched the export: %v", path, got)
		}
	}

	noClass := pv.DeepCopy()
	noClass.Spec.StorageClassName = ""
	if err := p.Delete(context.Background(), noClass); err == nil {
		t.Error("a PV without a class was deleted")
	}
	hostPath := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "hp"}}
	var ignored *controller.IgnoredError
	if err := p.Delete(context.Background(), hostPath); !errors.As(err, &ignored) {
		t.Errorf("a non-NFS PV: %v, want an IgnoredError", err)
	}
}

func TestExportRelative(t *testing.T) {
	for _, tc := range []struct {
		path, export, rel string
		ok                bool
	}{
		{"/nfsdata/a-b-c", "/nfsdata", "a-b-c", true},
		{"/nfsdata/x/y", "/nfsdata/", "x/y", true},
		{"/nfsdata", "/nfsdata", "", false},
		{"/nfsdataX/a", "/nfsdata", "", false},
		{"/a", "/", "a", true},
		{"/nfsdata/../etc", "/nfsdata", "", false},
	} {
		rel, ok := exportRelative(tc.path, tc.export)
		if rel != tc.rel || ok != tc.ok {
			t.Errorf("exportRelative(%q, %q) = %q, %v; want %q, %v", tc.path, tc.export, rel, ok, tc.rel, tc.ok)
		}
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range des {
		names = append(names, d.Name())
	}
	return names
}

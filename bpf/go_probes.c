/*
 * go_probes.c - attaches closewatch.bpf.c's net/http uprobes to a Go
 * binary: finds the three functions in its symbol table (.symtab: a
 * stripped binary has none, and keeps its dials without the request),
 * checks from .go.buildinfo that the binary passes arguments in registers
 * (Go 1.17+; the 1.18+ inline form is read, older binaries are skipped),
 * and attaches one entry uprobe per function, for every process running the
 * file (the programs filter by the traced tree). Never a uretprobe.
 */
#include "go_probes.h"
#include "closewatch.skel.h"

#include <bpf/libbpf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { P_QUEUE, P_DIAL, P_DELIVER, NPROBES };

static const char *const probe_symbol[NPROBES] = {
    [P_QUEUE] = "net/http.(*Transport).queueForDial",
    [P_DIAL] = "net/http.(*Transport).dialConnFor",
    [P_DELIVER] = "net/http.(*wantConn).tryDeliver",
};

struct binary {
    dev_t dev;
    ino_t ino;
    int attached;
};

struct cwb_go_probes {
    struct closewatch_bpf *skel;
    pthread_mutex_t lock;
    struct binary *bins;
    size_t nbins;
    struct bpf_link **links;
    size_t nlinks;
};

struct cwb_go_probes *cwb_go_probes_new(struct closewatch_bpf *skel)
{
    struct cwb_go_probes *gp = calloc(1, sizeof *gp);
    if (!gp)
        return NULL;
    gp->skel = skel;
    pthread_mutex_init(&gp->lock, NULL);
    return gp;
}

/* Go's version from the 1.18+ .go.buildinfo ("\xff Go buildinf:", pointer
 * size, flags with bit 2 set: the version follows at 32 as a varint-
 * prefixed string); 0 when absent or in an older form. */
static int go_minor(Elf_Data *d)
{
    const unsigned char *b = d->d_buf;
    size_t n = d->d_size;
    if (n < 34 || memcmp(b, "\xff Go buildinf:", 14) || !(b[15] & 2) || b[32] >= 0x80 ||
        (size_t)33 + b[32] > n)
        return 0;
    char v[32] = "";
    size_t len = b[32] < sizeof v - 1 ? b[32] : sizeof v - 1;
    memcpy(v, b + 33, len);
    int major, minor;
    return sscanf(v, "go%d.%d", &major, &minor) == 2 && major == 1 ? minor : 0;
}

/* The file offsets of probe_symbol[] in the Go binary at fd: 0, or -1 if
 * one is missing or the binary is not one the probes understand. */
static int find_offsets(int fd, size_t off[NPROBES])
{
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    if (!e)
        return -1;
    GElf_Addr addr[NPROBES] = {0};
    int minor = 0, found = 0;
    size_t shstr;
    Elf_Scn *scn = NULL;
    if (elf_getshdrstrndx(e, &shstr) != 0)
        goto out;
    while ((scn = elf_nextscn(e, scn))) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh))
            continue;
        const char *name = elf_strptr(e, shstr, sh.sh_name);
        Elf_Data *d = elf_getdata(scn, NULL);
        if (!d)
            continue;
        if (name && !strcmp(name, ".go.buildinfo"))
            minor = go_minor(d);
        if (sh.sh_type != SHT_SYMTAB || !sh.sh_entsize)
            continue;
        for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
            GElf_Sym sym;
            if (!gelf_getsym(d, (int)i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC)
                continue;
            const char *s = elf_strptr(e, sh.sh_link, sym.st_name);
            for (int p = 0; s && p < NPROBES; p++)
                if (!addr[p] && !strcmp(s, probe_symbol[p])) {
                    addr[p] = sym.st_value;
                    found++;
                }
        }
    }
    if (found != NPROBES || minor < 17)
        goto out;
    /* An address becomes a file offset through the loaded segment holding it. */
    size_t nph;
    if (elf_getphdrnum(e, &nph) != 0)
        goto out;
    int mapped = 0;
    for (int p = 0; p < NPROBES; p++)
        for (size_t i = 0; i < nph; i++) {
            GElf_Phdr ph;
            if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X) &&
                addr[p] >= ph.p_vaddr && addr[p] < ph.p_vaddr + ph.p_filesz) {
                off[p] = addr[p] - ph.p_vaddr + ph.p_offset;
                mapped++;
                break;
            }
        }
    elf_end(e);
    return mapped == NPROBES ? 0 : -1;
out:
    elf_end(e);
    return -1;
}

static int attach(struct cwb_go_probes *gp, const char *path, const size_t off[NPROBES])
{
    struct bpf_program *prog[NPROBES] = {
        [P_QUEUE] = gp->skel->progs.go_queue_for_dial,
        [P_DIAL] = gp->skel->progs.go_dial_conn_for,
        [P_DELIVER] = gp->skel->progs.go_try_deliver,
    };
    struct bpf_link **links = realloc(gp->links, (gp->nlinks + NPROBES) * sizeof *links);
    if (!links)
        return 0;
    gp->links = links;
    size_t first = gp->nlinks;
    for (int p = 0; p < NPROBES; p++) {
        LIBBPF_OPTS(bpf_uprobe_opts, o, .retprobe = false);
        struct bpf_link *l = bpf_program__attach_uprobe_opts(prog[p], -1, path, off[p], &o);
        if (!l) { /* all three or none: a half-linked dial is worse than none */
            while (gp->nlinks > first)
                bpf_link__destroy(gp->links[--gp->nlinks]);
            return 0;
        }
        gp->links[gp->nlinks++] = l;
    }
    return 1;
}

int cwb_go_probe(struct cwb_go_probes *gp, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return 0;
    }
    pthread_mutex_lock(&gp->lock);
    int done = -1;
    for (size_t i = 0; i < gp->nbins; i++)
        if (gp->bins[i].dev == st.st_dev && gp->bins[i].ino == st.st_ino)
            done = gp->bins[i].attached;
    if (done < 0) {
        size_t off[NPROBES];
        elf_version(EV_CURRENT);
        done = find_offsets(fd, off) == 0 && attach(gp, path, off);
        struct binary *b = realloc(gp->bins, (gp->nbins + 1) * sizeof *b);
        if (b) {
            gp->bins = b;
            gp->bins[gp->nbins++] = (struct binary){st.st_dev, st.st_ino, done};
        }
    }
    pthread_mutex_unlock(&gp->lock);
    close(fd);
    return done;
}

void cwb_go_probes_free(struct cwb_go_probes *gp)
{
    if (!gp)
        return;
    for (size_t i = 0; i < gp->nlinks; i++)
        bpf_link__destroy(gp->links[i]);
    free(gp->links);
    free(gp->bins);
    pthread_mutex_destroy(&gp->lock);
    free(gp);
}

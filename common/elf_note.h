/*
 * elf_note.h - finding a note in an object the loader mapped, through the
 * PT_NOTE segments dl_iterate_phdr shows. Used for the module map's
 * build-ids and for telling a Go program (its "Go" note), in the preload,
 * and by the tests that check what it recorded.
 */
#ifndef CW_ELF_NOTE_H
#define CW_ELF_NOTE_H

#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <string.h>

#define CW_NOTE_ANY_TYPE 0xffffffffu

/* The descriptor of the first note called name (its stored name may carry
 * extra NUL padding: the Go linker writes "Go\0\0") and of type type, with
 * its length in *len; NULL if there is none. */
static inline const uint8_t *cw_elf_note(const struct dl_phdr_info *info, const char *name,
                                         uint32_t type, uint32_t *len)
{
    size_t want = strlen(name) + 1;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
        const uint8_t *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const void *)p;
            const uint8_t *note_name = p + sizeof *nh;
            const uint8_t *desc = note_name + ((nh->n_namesz + 3) & ~3u);
            if (desc > end || desc + nh->n_descsz > end)
                break;
            if ((type == CW_NOTE_ANY_TYPE || nh->n_type == type) && nh->n_namesz >= want &&
                !memcmp(note_name, name, want)) {
                *len = nh->n_descsz;
                return desc;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    return NULL;
}

#endif

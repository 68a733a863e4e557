/*
 * program_kind.c - reads a program's ELF headers to tell whether the preload
 * can see its socket calls (see program_kind.h).
 */
#include "program_kind.h"

#include <elf.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Whether the ELF file f has a section called name. */
static int has_section(FILE *f, const Elf64_Ehdr *eh, const char *name)
{
    Elf64_Shdr strtab;
    if (!eh->e_shoff || eh->e_shentsize != sizeof strtab || eh->e_shstrndx >= eh->e_shnum ||
        fseek(f, (long)(eh->e_shoff + (uint64_t)eh->e_shstrndx * sizeof strtab), SEEK_SET) ||
        fread(&strtab, sizeof strtab, 1, f) != 1)
        return 0;
    size_t want = strlen(name) + 1;
    for (int i = 0; i < eh->e_shnum; i++) {
        Elf64_Shdr sh;
        char got[32];
        if (fseek(f, (long)(eh->e_shoff + (uint64_t)i * sizeof sh), SEEK_SET) ||
            fread(&sh, sizeof sh, 1, f) != 1 || sh.sh_name + want > strtab.sh_size ||
            fseek(f, (long)(strtab.sh_offset + sh.sh_name), SEEK_SET) ||
            fread(got, 1, want, f) != want)
            continue;
        if (!memcmp(got, name, want))
            return 1;
    }
    return 0;
}

int cw_program_kind(const char *path)
{
    struct stat st;
    if (stat(path, &st))
        return 0;
    int kind = (st.st_mode & (S_ISUID | S_ISGID)) ? CW_PROG_SETID : 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return kind;
    Elf64_Ehdr eh;
    if (fread(&eh, sizeof eh, 1, f) == 1 && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
        eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr)) {
        int is_static = 1;
        for (int i = 0; i < eh.e_phnum && is_static; i++) {
            Elf64_Phdr ph;
            if (fseek(f, (long)(eh.e_phoff + (uint64_t)i * sizeof ph), SEEK_SET) ||
                fread(&ph, sizeof ph, 1, f) != 1)
                is_static = 0; /* unreadable: do not guess */
            else if (ph.p_type == PT_INTERP)
                is_static = 0;
        }
        kind |= is_static ? CW_PROG_STATIC : 0;
        kind |= has_section(f, &eh, ".go.buildinfo") ? CW_PROG_GO : 0;
    }
    fclose(f);
    return kind;
}

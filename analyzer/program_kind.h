/*
 * program_kind.h - what `closewatch run` needs to know of the program file
 * before it starts it: whether LD_PRELOAD can reach it at all (static,
 * setuid) and whether it is Go (makes its own system calls).
 */
#ifndef CW_PROGRAM_KIND_H
#define CW_PROGRAM_KIND_H

enum cw_program_kind {
    CW_PROG_STATIC = 1 << 0, /* ELF without PT_INTERP */
    CW_PROG_GO = 1 << 1,     /* has a .go.buildinfo section */
    CW_PROG_SETID = 1 << 2,  /* setuid or setgid */
};

/* The kinds of the file at path (0 if none applies or it cannot be read). */
int cw_program_kind(const char *path);

#endif

/*
 * jvm_embed.c - a C program that starts a JVM itself (JNI_CreateJavaVM),
 * for tests/test_lang_java.c: it opens a socket before the JVM exists, then
 * has Java open two (new java.net.ServerSocket(0), called through JNI from
 * this thread, which the VM attached at creation). Built by the test
 * against the JDK's headers, linked with libjvm or (dlopen) not.
 *
 *     jvm_embed                  libjvm linked: loaded before our constructor
 *     jvm_embed dlopen LIBJVM    libjvm dlopen()ed after the first socket, as
 *                                jsvc and embedding applications do
 *
 * Prints "ready" once the sockets are open and exits when stdin reaches
 * EOF. The first socket's stack can only be native; the two Java opened
 * have Java frames.
 */
#include <dlfcn.h>
#include <jni.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef jint (*create_vm_fn)(JavaVM **, void **, void *);

#ifdef LINKED
#define CREATE_VM JNI_CreateJavaVM
#else
#define CREATE_VM NULL
#endif

int main(int argc, char **argv)
{
    int early = socket(AF_INET, SOCK_STREAM, 0);
    create_vm_fn create = CREATE_VM;
    if (argc == 3 && !strcmp(argv[1], "dlopen")) {
        void *h = dlopen(argv[2], RTLD_NOW | RTLD_GLOBAL);
        *(void **)&create = h ? dlsym(h, "JNI_CreateJavaVM") : NULL;
    }
    JavaVM *vm;
    JNIEnv *env;
    JavaVMInitArgs args = {.version = JNI_VERSION_1_8};
    if (early < 0 || !create || create(&vm, (void **)&env, &args) != JNI_OK)
        return 1;
    jclass cls = (*env)->FindClass(env, "java/net/ServerSocket");
    jmethodID init = cls ? (*env)->GetMethodID(env, cls, "<init>", "(I)V") : NULL;
    for (int i = 0; i < 2; i++)
        if (!init || !(*env)->NewObject(env, cls, init, 0) || (*env)->ExceptionCheck(env))
            return 1;
    printf("ready\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0)
        ;
    close(early);
    return 0;
}

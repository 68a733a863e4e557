/*
 * jvm_embed.c - a C program that starts a JVM itself (JNI_CreateJavaVM,
 * linked with libjvm), for tests/test_lang_java.c: it opens a socket before
 * the JVM exists, then has Java open one (new java.net.ServerSocket(0),
 * called through JNI from this thread, which the VM attached at creation).
 * Built by the test against the JDK's headers and libjvm.
 *
 *     jvm_embed
 *
 * Prints "ready" once both sockets are open and exits when stdin reaches
 * EOF. The first socket's stack can only be native: closewatch's report
 * says stacks were recorded before the JVM was found; the second has Java
 * frames.
 */
#include <jni.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
    int early = socket(AF_INET, SOCK_STREAM, 0);
    JavaVM *vm;
    JNIEnv *env;
    JavaVMOption opt[] = {{.optionString = "-Xrs"}};
    JavaVMInitArgs args = {.version = JNI_VERSION_1_8, .nOptions = 1, .options = opt};
    if (early < 0 || JNI_CreateJavaVM(&vm, (void **)&env, &args) != JNI_OK)
        return 1;
    jclass cls = (*env)->FindClass(env, "java/net/ServerSocket");
    jmethodID init = cls ? (*env)->GetMethodID(env, cls, "<init>", "(I)V") : NULL;
    jobject ss = init ? (*env)->NewObject(env, cls, init, 0) : NULL;
    if (!ss || (*env)->ExceptionCheck(env))
        return 1;
    printf("ready\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0)
        ;
    close(early);
    return 0;
}

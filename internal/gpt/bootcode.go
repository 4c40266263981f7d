package gpt

// BootCode is the 16-bit real-mode program in a claimed disk's protective
// MBR. The 0x55AA mark makes a BIOS treat the disk as bootable; when its boot
// order puts the disk before the stick or CD, it runs these bytes. Zeroed
// code would hang at "Booting from Hard Disk..."; this prints why and hands
// back to the BIOS with int 18h, which (SeaBIOS and most firmwares) boots the
// next device in the boot order. UEFI firmware never runs it.
//
// Hand-assembled; the BIOS loads it at 0000:7C00 (some at 07C0:0000, so only
// DS-relative data and relative jumps are used):
//
//	7C00  31 C0     xor  ax, ax
//	7C02  8E D8     mov  ds, ax          ; DS = 0: the message is at 0:7C1B
//	7C04  BE 1B 7C  mov  si, 7C1Bh
//	7C07  FC        cld
//	7C08  AC        lodsb                ; next: al = [ds:si++]
//	7C09  84 C0     test al, al
//	7C0B  74 09     jz   7C16h           ; NUL: done
//	7C0D  B4 0E     mov  ah, 0Eh         ; teletype output
//	7C0F  BB 07 00  mov  bx, 0007h       ; page 0, light grey
//	7C12  CD 10     int  10h
//	7C14  EB F2     jmp  7C08h
//	7C16  CD 18     int  18h             ; done: boot the next device
//	7C18  F4        hlt                  ; a BIOS that returns: stop here
//	7C19  EB FD     jmp  7C18h
//	7C1B  "Lightwhale data disk, not bootable" CR LF NUL
//
// `objdump -D -b binary -m i8086 --adjust-vma=0x7c00` prints the same.
var BootCode = append([]byte{
	0x31, 0xC0,
	0x8E, 0xD8,
	0xBE, 0x1B, 0x7C,
	0xFC,
	0xAC,
	0x84, 0xC0,
	0x74, 0x09,
	0xB4, 0x0E,
	0xBB, 0x07, 0x00,
	0xCD, 0x10,
	0xEB, 0xF2,
	0xCD, 0x18,
	0xF4,
	0xEB, 0xFD,
}, BootMessage+"\r\n\x00"...)

// BootMessage is what BootCode prints.
const BootMessage = "Lightwhale data disk, not bootable"

// bootMessageAt is where the message starts in BootCode (the operand of
// "mov si" minus 7C00h).
const bootMessageAt = 0x1B
